"""The run plan: resolved once on the driver, written beside the config the user gave (which is
saved as given), read back on resume from any working directory without loading a checkpoint."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from nint_dist import checkpoint, launch
from nint_dist.config import load_config
from nint_dist.errors import UserError
from nint_dist.plan import RunPlan, read_run_files
from tests.helpers import REPO

SMALL = ["run.backend=local", "model.layers=2", "model.width=8", "log.every=2", "train.checkpoint_every=2"]
SMALL += ["log.progress=false", "log.tensorboard=false"]


def photo(folder: Path, seed: int = 0) -> Path:
    """A 12x10 RGB PNG (a file input: ingested into the run directory)."""
    folder.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / "photo.png")
    return folder / "photo.png"


def fit(*args: str) -> int:
    return launch.main([str(REPO / "configs" / "quickstart.yaml"), *SMALL, *args])


@pytest.fixture
def started(tmp_path, monkeypatch) -> Path:
    """A 4-step run started from ``tmp_path/a`` with the relative data.path ``photo.png``."""
    photo(tmp_path / "a")
    monkeypatch.chdir(tmp_path / "a")
    assert fit("data.path=photo.png", f"run.dir={tmp_path / 'run'}", "train.steps=4") == 0
    return tmp_path / "run"


def test_the_saved_config_is_the_one_given_and_the_plan_holds_the_resolution(started, tmp_path):
    given = load_config(
        str(REPO / "configs" / "quickstart.yaml"),
        [*SMALL, "data.path=photo.png", f"run.dir={tmp_path / 'run'}", "train.steps=4"],
    )
    saved = yaml.safe_load((started / "config.yaml").read_text())
    assert saved == given.to_dict()  # nothing filled in or rewritten
    assert saved["data"]["path"] == "photo.png" and saved["train"]["workers"] is None
    assert saved["run"]["backend"] == "local" and "source" not in saved["data"]
    plan = json.loads((started / "plan.json").read_text())
    assert plan == {
        "run_dir": str(started.resolve()),
        "signal": str(started.resolve() / "signal.zarr"),
        "source": str((tmp_path / "a" / "photo.png").resolve()),
        "workers": 1,
        "backend": "local",
        "device": "cpu",
        "rows": [[0, 12]],
        "resume_step": 0,
    }


def test_resume_from_another_working_directory(started, tmp_path, monkeypatch, capsys):
    """The saved data.path is relative to where the run began: --resume from elsewhere needs no
    data.path, and launching again names the same file by another relative path."""
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "b")
    assert launch.main(["--resume", str(started), "train.steps=6"]) == 0
    assert "resuming" in capsys.readouterr().err
    assert json.loads((started / "final.json").read_text())["steps"] == 6
    assert json.loads((started / "plan.json").read_text())["resume_step"] == 4
    assert yaml.safe_load((started / "config.yaml").read_text())["data"]["path"] == "photo.png"
    assert fit("data.path=../a/photo.png", f"run.dir={started}", "train.steps=8") == 0
    assert json.loads((started / "final.json").read_text())["steps"] == 8
    other = photo(tmp_path / "c", seed=1)  # another input: refused, nothing touched
    before = sorted(p.name for p in started.iterdir())
    assert fit(f"data.path={other}", f"run.dir={started}", "train.steps=10") == 2
    assert "holds a run on" in capsys.readouterr().err
    assert sorted(p.name for p in started.iterdir()) == before


def test_the_driver_reads_the_resume_step_from_the_checkpoint_names(started, monkeypatch):
    """No checkpoint state is loaded on the driver (a damaged newest one falls back by name)."""

    def refuse(*args, **kwargs):
        raise AssertionError("the driver loaded a checkpoint")

    monkeypatch.setattr(checkpoint, "load", refuse)
    cfg, _ = read_run_files(started)
    plan = launch.resolve_plan(cfg, resume_dir=started)
    assert plan.resume_step == 4 and plan.signal == str(started.resolve() / "signal.zarr")
    assert checkpoint.step_of(started / "checkpoints" / "step_000004") == 4
    state = started / "checkpoints" / "step_000004" / checkpoint.STATE
    state.write_bytes(state.read_bytes()[:100])
    with pytest.warns(UserWarning, match="step_000004 is damaged"):
        assert launch.resolve_plan(cfg, resume_dir=started).resume_step == 2


def test_the_dry_run_prints_the_plan_it_would_run(started, tmp_path, capsys):
    assert launch.main([str(REPO / "configs" / "quickstart.yaml"), *SMALL, "data.path=photo.png",
                        f"run.dir={started}", "--dry-run"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    saved = RunPlan.from_dict(json.loads((started / "plan.json").read_text()))
    assert "rows " + ", ".join(f"{lo}:{hi}" for lo, hi in saved.rows) + " " in out
    assert f"{saved.signal} (from {saved.source})" in out and "resumed from step 4" in out


def test_run_dir_urls_and_relative_paths_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert launch.run_dir_of("runs/x", "auto") == tmp_path.resolve() / "runs" / "x"
    assert launch.run_dir_of((tmp_path / "a b").as_uri(), "auto") == tmp_path.resolve() / "a b"
    with pytest.raises(UserError, match="object stores"):
        launch.run_dir_of("s3://bucket/run", "auto")


def test_a_run_directory_of_the_previous_version_resumes(started, tmp_path, capsys):
    """Its config.yaml held the resolved config with data.source and there was no plan.json."""
    old = tmp_path / "old"
    shutil.copytree(started, old)
    (old / "plan.json").unlink()
    values = yaml.safe_load((old / "config.yaml").read_text())
    values["data"].update(path=str(old / "signal.zarr"), source=str(tmp_path / "a" / "photo.png"))
    values["train"]["workers"], values["run"]["dir"] = 1, str(old)
    values["sampler"]["chunk"] = values["sampler"].pop("pass_size")  # that version's spelling
    values["model"]["ff_features"] = values["model"]["ffn"].pop("features")
    values["sampler"]["ntk_share"] = values["sampler"]["nint"].pop("ntk_share")
    del values["sampler"]["nint_paper"]["ntk_share"]
    (old / "config.yaml").write_text(yaml.safe_dump(values))
    assert launch.main(["--resume", str(old), "train.steps=6"]) == 0
    assert "from step 4" in capsys.readouterr().err
    assert json.loads((old / "final.json").read_text())["steps"] == 6
    cfg, plan = read_run_files(old)  # rewritten in this version's form
    assert plan.source == str(tmp_path / "a" / "photo.png") and plan.signal == str(old / "signal.zarr")
    (old / "plan.json").unlink()  # neither data.source nor plan.json: one line
    with pytest.raises(UserError, match="no plan.json"):
        read_run_files(old)


def test_a_moved_run_directory_reads_its_own_signal(started, tmp_path):
    """Copied elsewhere (from a cluster to a laptop) and the original gone: the plan's run_dir and
    its ingested signal follow the directory."""
    import nint_dist

    moved = tmp_path / "elsewhere" / "run"
    shutil.copytree(started, moved)
    shutil.rmtree(started)
    _, plan = read_run_files(moved)
    assert plan.run_dir == str(moved.resolve()) and plan.signal == str(moved.resolve() / "signal.zarr")
    assert nint_dist.load(moved, device="cpu").render().shape == (12, 10, 3)
    assert launch.main(["--resume", str(moved), "train.steps=6"]) == 0
