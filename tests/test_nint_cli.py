"""The `nint` command and the fit command's introspection flags: --version, --help-config from
the dataclasses, --print-config, --dry-run (nothing written), the Hydra hint; and how the device,
worker count and backend are chosen."""

import dataclasses
import subprocess
import sys
import typing

import pytest
import yaml

from nint_dist import __version__, cluster, launch
from nint_dist.config import Config, load_config
from nint_dist.errors import UserError
from tests.helpers import REPO, make_tiny_signal


def nint(*args):
    return subprocess.run(
        [sys.executable, "-m", "nint_dist.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=180
    )


def test_version_and_subcommands():
    assert nint("--version").stdout.strip() == f"nint_dist {__version__}"
    text = nint("--help").stdout
    assert all(name in text for name in ("fit", "ingest", "render", "generate", "bench", "+key"))
    result = nint("ingest", "absent.png", "out.zarr")  # dispatched to python -m nint_dist.ingest
    assert result.returncode == 2 and result.stderr.startswith("error: input file not found")
    assert not (REPO / "out.zarr").exists()


def test_help_config_lists_every_key_with_its_docstring(capsys):
    assert launch.main(["--help-config"]) == 0
    text = capsys.readouterr().out

    def keys(cls, prefix=""):  # every leaf of the dataclass tree, sub-sections included
        hints = typing.get_type_hints(cls)
        return [
            key
            for f in dataclasses.fields(cls)
            for key in (
                keys(hints[f.name], f"{prefix}{f.name}.")
                if dataclasses.is_dataclass(hints[f.name])
                else [f"{prefix}{f.name}"]
            )
        ]

    expected = keys(Config)
    assert "sampler.nint.pool_factor" in expected and "model.hashgrid.levels" in expected
    listed = [
        line.split(":")[0] for line in text.splitlines() if line and not line.startswith(" ") and ":" in line
    ]
    assert listed[: len(expected)] == expected
    assert "train.steps: int = 1000\n    Optimizer steps.\n" in text
    assert "sampler.pass_size: int | None = null\n    Coordinates per pass of the samplers' scoring" in text
    assert "sampler.nint.pool_factor: float = 1.0\n    Residuals are ranked over a pool" in text
    assert launch.main(["--help-config", "run."]) == 0
    assert capsys.readouterr().out.startswith("run.dir: str = 'runs/run'\n")
    assert launch.main(["--help-config", "sampler.nint"]) == 0  # one sub-section, not nint_paper's
    out = capsys.readouterr().out
    shown = [line.split(":")[0] for line in out.splitlines() if line.startswith("sampler.")]
    assert shown == [k for k in expected if k.startswith("sampler.nint.")] and len(shown) == 11
    assert launch.main(["--help-config", "nope"]) == 2


def test_print_config_resolves_and_writes_nothing(tmp_path, capsys):
    run_dir = tmp_path / "run"
    args = [
        "configs/quickstart.yaml",
        f"run.dir={run_dir}",
        "train.steps=7",
        "train.device=cpu",
        "--print-config",
    ]
    assert launch.main(args) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["train"]["steps"] == 7 and printed["model"]["width"] == 64
    assert printed["train"]["workers"] is None and printed["run"]["backend"] == "auto"  # as given
    assert not run_dir.exists()


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, capsys):
    signal = make_tiny_signal(tmp_path)  # 24x20 in 6 chunk rows of 4
    run_dir = tmp_path / "run"
    before = sorted(tmp_path.rglob("*"))
    args = [f"data.path={signal}", f"run.dir={run_dir}", "train.workers=2", "train.device=cpu", "--dry-run"]
    assert launch.main(args) == 0
    out = capsys.readouterr().out
    assert "grid 24x20, 3 channel(s), 480 points, uint8" in out
    assert "2 on cpu, backend ray" in out and "rows 0:12, 12:24" in out and "per worker" in out
    assert sorted(tmp_path.rglob("*")) == before
    assert launch.main([*args[:-1], "train.workers=7", "--dry-run"]) == 2  # 6 chunk rows: too few
    assert "too few for 7 workers" in capsys.readouterr().err


def test_hydra_forms_get_a_hint(capsys):
    for item in ("+train.steps=5", "~train.steps"):
        assert launch.main(["configs/quickstart.yaml", item, "--print-config"]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Hydra" in err and "key=value" in err


def placed(monkeypatch, gpus, *overrides, address=None) -> tuple[int, str]:
    """(workers, backend) from launch.place on a machine with ``gpus`` GPUs (torch's count
    replaced); the config itself stays as given."""
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    cfg = load_config("configs/quickstart.yaml", list(overrides))
    before = cfg.to_dict()
    placement = launch.place(cfg)
    assert cfg.to_dict() == before
    return placement


def test_workers_and_backend_follow_the_gpus(monkeypatch):
    monkeypatch.chdir(REPO)
    assert placed(monkeypatch, 0) == (1, "local")
    assert placed(monkeypatch, 1) == (1, "local")
    assert placed(monkeypatch, 4) == (4, "ray")
    assert placed(monkeypatch, 4, "train.device=cpu") == (1, "local")
    assert placed(monkeypatch, 0, "train.workers=3") == (3, "ray")
    with pytest.raises(UserError, match="asks for 2 GPU workers but 1 GPU"):
        placed(monkeypatch, 1, "train.workers=2")
    with pytest.raises(UserError, match="no GPU is visible"):
        placed(monkeypatch, 0, "train.device=cuda")
    with pytest.raises(UserError, match="run.backend=local runs one worker"):
        placed(monkeypatch, 2, "run.backend=local")


def test_more_workers_than_cores_on_the_local_ray_warns(ray_session, monkeypatch, capsys):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(cluster.os, "cpu_count", lambda: 2)
    cfg = load_config("configs/quickstart.yaml", ["train.workers=3", "train.device=cpu"])
    assert cluster.connect_ray(cfg, 3, verbose=False) is False
    err = capsys.readouterr().err
    assert "warning: train.workers=3 on 2 CPU cores" in err
    cluster.connect_ray(cfg, 2, verbose=False)
    assert "warning" not in capsys.readouterr().err
