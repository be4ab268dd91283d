"""Checkpoints through Ray Train: a resumed run makes the same selections and reaches the same
parameters as an uninterrupted one; a damaged checkpoint is skipped; TensorBoard holds the
promised tags."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from nint_dist import checkpoint
from tests.helpers import EXACT_FIT, checkpoint_params, launch_fit

COMMON = [
    *EXACT_FIT,
    "train.workers=2",
    "train.checkpoint_every=4",
    "log.every=4",
    "log.save_selection=true",
    "log.progress=false",
]


def fit(signal: Path, run_dir: Path, steps: int, *extra: str) -> int:
    return launch_fit(signal, run_dir, f"train.steps={steps}", *COMMON, *extra)


@pytest.fixture(scope="module")
def runs(ray_session, tiny_signal_module, tmp_path_factory):
    whole = tmp_path_factory.mktemp("whole") / "run"
    resumed = tmp_path_factory.mktemp("resumed") / "run"
    assert fit(tiny_signal_module, whole, 12) == 0
    assert fit(tiny_signal_module, resumed, 6, "train.workers=3") == 0  # stops at 6; checkpoints at 4, 6
    assert fit(tiny_signal_module, resumed, 12) == 0  # resumes at 6 on 2 workers (a node lost)
    return whole, resumed


def test_resumed_run_matches_uninterrupted(runs):
    whole, resumed = runs
    for step in range(1, 13):
        name = f"selection/step_{step:06d}.npy"
        assert np.array_equal(np.load(whole / name), np.load(resumed / name)), step
    a, b = checkpoint_params(whole), checkpoint_params(resumed)
    assert ((a - b).norm() / a.norm()).item() < 1e-9
    steps = [json.loads(line)["step"] for line in (resumed / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 12
    assert json.loads((resumed / "final.json").read_text())["steps"] == 12
    # train.keep_checkpoints=3: Ray Train's num_to_keep, and the driver for the first launch's
    assert sorted(p.name for p in (resumed / "checkpoints").glob("step_*")) == [
        "step_000006",
        "step_000008",
        "step_000012",
    ]


def test_plan_json_holds_the_split_the_dry_run_prints(runs, tiny_signal_module, tmp_path, capsys):
    """The resumed run was launched on 3 workers and continued on 2: its plan is this launch's
    (2 workers' rows, resumed at step 6); the config keeps what was given."""
    whole, resumed = runs
    plan = json.loads((resumed / "plan.json").read_text())
    assert plan["rows"] == [[0, 12], [12, 24]] and plan["workers"] == 2 and plan["resume_step"] == 6
    assert plan["signal"] == plan["source"] == str(tiny_signal_module.resolve()) and plan["backend"] == "ray"
    assert json.loads((whole / "plan.json").read_text())["rows"] == plan["rows"]
    assert yaml.safe_load((resumed / "config.yaml").read_text())["run"]["backend"] == "auto"
    assert launch_fit(tiny_signal_module, tmp_path / "dry", *COMMON, "--dry-run") == 0
    assert "rows 0:12, 12:24 (whole chunks" in capsys.readouterr().out


def test_checkpoints_are_in_the_run_directory_with_checksums(runs):
    whole, _ = runs
    names = sorted(p.name for p in (whole / "checkpoints").glob("step_*"))
    assert names == ["step_000004", "step_000008", "step_000012"]
    assert all(checkpoint.is_valid(whole / "checkpoints" / n) for n in names)


def test_damaged_checkpoint_is_skipped_with_a_warning(runs, tmp_path):
    whole, _ = runs
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(whole / "checkpoints", copy / "checkpoints")
    state = copy / "checkpoints" / "step_000012" / checkpoint.STATE
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    with pytest.warns(UserWarning, match="step_000012 is damaged"):
        assert checkpoint.latest(copy).name == "step_000008"


def test_resume_refuses_a_different_run(runs, tiny_signal_module):
    _, resumed = runs
    before = sorted(p.name for p in resumed.iterdir())
    assert fit(tiny_signal_module, resumed, 20, "model.width=32") == 2
    assert sorted(p.name for p in resumed.iterdir()) == before


def test_tensorboard_tags(runs):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    whole, _ = runs
    events = EventAccumulator(str(whole / "tensorboard"), size_guidance={"images": 0, "histograms": 0})
    events.Reload()
    tags = events.Tags()
    for scalar in (
        "train/loss",
        "eval/psnr",
        "eval/ssim",
        "train/lr",
        "sampler/ratio",
        "sampler/share_ntk",
        "sampler/share_residual",
        "sampler/share_random",
        "time/time_score_s",
        "time/time_select_s",
        "time/time_exchange_s",
        "time/time_train_s",
        "time/samples_per_s",
        "system/memory/worker_0_bytes",
        "system/memory/worker_1_bytes",
        "system/balance_samples_max_over_mean",
    ):
        assert scalar in tags["scalars"], scalar
    assert all(t.split("/")[0] in ("train", "eval", "time", "sampler", "system") for t in tags["scalars"])
    assert [e.step for e in events.Scalars("eval/psnr")] == [4, 8, 12]
    assert {"eval/reconstruction", "sampler/selection_heatmap"} <= set(tags["images"])
    assert any(t.startswith("sampler/scores/") for t in tags["histograms"])
    assert any(t.startswith("config") for t in tags["tensors"])  # the resolved config as text
    image = events.Images("eval/reconstruction")[-1]
    assert (image.width, image.height) == (20, 24)
