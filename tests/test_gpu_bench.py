"""``benchmarks/gpu.sh``, the script that measures the GPU targets, run end to end at its smoke
sizes on the CPU: GPU time is scarce, so a part that has stopped working must show here first."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _gpu_sh(out: Path, *options: str, without_ray: Path | None = None) -> subprocess.CompletedProcess:
    """gpu.sh --smoke; with ``without_ray`` (a scratch folder), ``import ray`` fails in it, as on
    a GPU machine that has no Ray."""
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    if without_ray is not None:
        (without_ray / "ray").mkdir(parents=True)
        (without_ray / "ray" / "__init__.py").write_text("raise ImportError('no Ray on this machine')\n")
        env["PYTHONPATH"] = str(without_ray)
    command = ["bash", str(REPO / "benchmarks" / "gpu.sh"), "--smoke", str(out), *options]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def test_every_part_runs_and_the_target_table_comes_last(tmp_path):
    done = _gpu_sh(tmp_path / "out", "--samplers", "soft")
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "out" / "gpu_results.json").read_text())
    failed = {label: run["error"] for label, run in results["runs"].items() if "error" in run}
    assert not failed and not results["skipped"]
    labels = set(results["runs"])
    for name in ("uniform", "nint", "nint-paper"):
        assert f"01.png siren {name}" in labels
    assert {"safelanding_5120x2880 hash nint", "safelanding_5120x2880 hash uniform"} <= labels
    assert {"fallenleaf_2560x1600 hash nint", "generated 128x128 hash nint"} <= labels
    assert "safelanding_5120x2880 hash soft, quiet" in labels  # part 6, asked for
    # the grid kernels' check: skipped on a CPU
    checks = ("uniform", "nint", "error-map", "uniform-emphasis", "epoch_order", "grid_kernels")
    assert all(results["graph_check"][name]["match"] for name in checks)
    table = done.stdout[done.stdout.index("### Targets") :]
    assert "gigapixel 128x128" in table and "wall-clock at default logging" in table


def test_parts_picks_the_runs_without_ray_and_an_unknown_part_is_one_error(tmp_path):
    done = _gpu_sh(tmp_path / "out", "--parts", "large", without_ray=tmp_path / "no-ray")
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "out" / "gpu_results.json").read_text())
    assert set(results["runs"]) == {"safelanding_5120x2880 hash nint", "safelanding_5120x2880 hash uniform"}
    assert "graph_check" not in results and "gigapixel" not in done.stdout

    bad = _gpu_sh(tmp_path / "bad", "--parts", "large,giga2")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1] == (
        "gpu.py: error: --parts: unknown giga2 (choose from graph, siren, large, giga, second, samplers)"
    )
