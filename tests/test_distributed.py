"""Exact distribution through real Ray Train workers (gloo): the selection at every step and
the parameters after training do not depend on the number of workers."""

import json
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import checkpoint_params, launch_fit

COMMON = [
    "model.layers=3",
    "model.width=16",
    "sampler.name=nint-paper",
    "sampler.ratio=0.2",
    "sampler.pass_size=50",
    "log.eval_pass_size=50",
    "train.steps=10",
    "train.lr=1e-3",
    "log.save_selection=true",
    "log.every=5",
    "log.progress=false",
    "log.tensorboard=false",
]


def fit(signal: Path, run_dir: Path, workers: int, dtype: str, *extra: str) -> Path:
    code = launch_fit(signal, run_dir, f"train.workers={workers}", f"train.dtype={dtype}", *COMMON, *extra)
    assert code == 0
    return run_dir


def selections(run_dir: Path) -> list[np.ndarray]:
    files = sorted((run_dir / "selection").glob("step_*.npy"))
    assert len(files) == 10
    return [np.load(f) for f in files]


@pytest.fixture(scope="module")
def runs(ray_session, tiny_signal_module, tmp_path_factory):
    out = {}
    for dtype, world_sizes in (("float64", (1, 2, 3)), ("float32", (1, 3))):
        for workers in world_sizes:
            out[dtype, workers] = fit(
                tiny_signal_module, tmp_path_factory.mktemp(f"{dtype}-{workers}"), workers, dtype
            )
    # the selection trained in passes of 7 samples (gradient accumulation, DDP syncing once)
    out["float64", "micro"] = fit(
        tiny_signal_module, tmp_path_factory.mktemp("micro"), 2, "float64", "train.micro_batch=7"
    )
    # with the residual emphasis: its scale is summed over the workers, its weights per pass
    for workers, extra in ((1, []), (2, ["train.micro_batch=7"])):
        out["float64", "emphasis", workers] = fit(
            tiny_signal_module,
            tmp_path_factory.mktemp(f"emphasis-{workers}"),
            workers,
            "float64",
            "sampler.emphasis.power=1",
            *extra,
        )
    return out


def test_float64_selections_identical_for_1_2_3_workers(runs):
    reference = selections(runs["float64", 1])
    assert all(len(s) == 96 for s in reference)
    for workers in (2, 3):
        for step, (a, b) in enumerate(zip(reference, selections(runs["float64", workers]), strict=True)):
            assert np.array_equal(a, b), f"step {step + 1} differs with {workers} workers"


def test_float64_parameters_agree_after_10_steps(runs):
    reference = checkpoint_params(runs["float64", 1])
    for workers in (2, 3, "micro"):
        got = checkpoint_params(runs["float64", workers])
        rel = ((got - reference).norm() / reference.norm()).item()
        assert rel < 1e-9, (workers, rel)


def test_float32_selections_overlap_99_percent(runs):
    for a, b in zip(selections(runs["float32", 1]), selections(runs["float32", 3]), strict=True):
        overlap = len(np.intersect1d(a, b)) / len(a)
        assert overlap >= 0.99


def test_outputs_of_a_run(runs):
    run_dir = runs["float64", 2]
    for name in ("config.yaml", "metrics.jsonl", "final.json", "reconstruction.png", "reconstruction.zarr"):
        assert (run_dir / name).exists(), name

    final = json.loads((run_dir / "final.json").read_text())
    assert final["steps"] == 10 and final["workers"] == 2 and final["train_seconds"] > 0
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [5, 10]
    assert rows[-1]["psnr"] == pytest.approx(final["psnr"])


def test_the_residual_emphasis_is_exact_across_workers_and_passes(runs):
    one, two = runs["float64", "emphasis", 1], runs["float64", "emphasis", 2]
    for step, (a, b) in enumerate(zip(selections(one), selections(two), strict=True)):
        assert np.array_equal(a, b), f"step {step + 1} differs"
    reference = checkpoint_params(one)
    assert ((checkpoint_params(two) - reference).norm() / reference.norm()).item() < 1e-9
    plain = checkpoint_params(runs["float64", 1])
    assert ((plain - reference).norm() / reference.norm()).item() > 1e-6  # it did weigh the losses
