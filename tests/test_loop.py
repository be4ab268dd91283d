"""The training loop's seams: workers take the run plan (signal, rows, run directory) and leave
the config as it was; drivers compose a loop from options instead of subclassing it."""

import json
from pathlib import Path

import torch

from nint_dist.config import load_config
from nint_dist.plan import RunPlan
from nint_dist.signal import open_signal
from nint_dist.training import CpuSeconds, Loop
from nint_dist.worker import Runtime, run

TINY = [
    "model.layers=3",
    "model.width=16",
    "log.tensorboard=false",
    "log.progress=false",
    "run.backend=local",
]


def rows_of(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_a_worker_reads_and_writes_where_the_plan_says_and_leaves_the_config_alone(tiny_signal, tmp_path):
    cfg = load_config(
        None,
        [
            f"data.path={tmp_path / 'not-read.zarr'}",
            f"run.dir={tmp_path / 'not-written'}",
            *TINY,
            "train.steps=4",
        ],
    )
    before = cfg.to_dict()
    _, spec = open_signal(str(tiny_signal))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    plan = RunPlan.split(
        spec, run_dir=str(run_dir), signal=str(tiny_signal), source=str(tiny_signal), workers=1,
        backend="local", device="cpu",
    )  # fmt: skip
    final = run(cfg, plan, Runtime(0, 1, torch.device("cpu")))
    assert final["steps"] == 4 and (run_dir / "final.json").exists()
    assert (run_dir / "reconstruction.zarr").exists() and (run_dir / "workers" / "rank_0.json").exists()
    assert not (tmp_path / "not-written").exists()
    assert cfg.to_dict() == before
    longer = load_config(None, [f"data.path={tmp_path / 'not-read.zarr'}", *TINY, "train.steps=6"])
    resumed = Loop(longer, plan, Runtime(0, 1, torch.device("cpu")))
    assert resumed.steps_done == 4  # the newest checkpoint in the plan's run directory


def test_a_composed_loop_takes_its_options(tiny_signal, tmp_path):
    cfg = load_config(
        None,
        [f"data.path={tiny_signal}", f"run.dir={tmp_path}", *TINY, "train.steps=100000", "log.every=5",
         "log.eval_points=50", "sampler.name=uniform", "sampler.ratio=0.13"],
    )  # fmt: skip
    cpu = CpuSeconds(budget=0.3)
    loop = Loop.in_process(
        cfg, "cpu", export=False, extra_metrics=[lambda lp: {"steps_seen": float(lp.steps_done)}],
        cpu_seconds=cpu, budget=cpu, always_exact=True,
    )  # fmt: skip
    final = loop.run()
    assert 1 <= final["steps"] < 100000 and cpu.seconds >= 0.3  # the CPU budget ended it
    assert not (tmp_path / "reconstruction.zarr").exists()
    rows = rows_of(tmp_path)
    assert all(r["steps_seen"] == r["step"] for r in rows)
    assert all(r["psnr_points"] == 480 for r in rows)  # always exact, never the 50-point subset
    assert rows[-1]["cpu_seconds"] == cpu.seconds
    assert all(r["num_selected"] == 62 and r["ratio"] == 62 / 480 for r in rows)  # not the config's 0.13


def test_step_by_step_drivers_see_the_selection_and_the_loss(tiny_signal, tmp_path):
    cfg = load_config(
        None, [f"data.path={tiny_signal}", f"run.dir={tmp_path}", *TINY, "sampler.name=uniform"]
    )
    loop = Loop.in_process(cfg, "cpu")
    sel, loss = loop.step()
    assert loop.steps_done == 1 and sel.indices.numel() == int(cfg.sampler.ratio * 480)
    assert loss.ndim == 0 and torch.isfinite(loss)
    spans = loop.clock.close_block()
    assert set(spans) <= {"score", "select", "exchange", "train", "loop"} and loop.clock.train_seconds > 0


FAULTS_PER_STEP = """
import ctypes, resource, torch
from nint_dist.devices import M_MMAP_THRESHOLD, keep_freed_cpu_memory

torch.set_num_threads(1)

def faults():  # minor page faults of 50 steps that each make two 2 MB temporaries
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = torch.rand(4096, 128)
    for _ in range(50):
        y = (x * 2) * 2
        del y
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

# glibc's threshold moves with the process's history; pin it at its starting value (128 KiB),
# where every temporary is mapped afresh, as it is for a fit's first large blocks
ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, 128 << 10)
faults()
before = faults()
kept = keep_freed_cpu_memory()
faults()
print(kept, before, faults())
"""


def test_a_cpu_process_keeps_the_memory_it_frees():
    """Measured, not assumed: with every 2 MB temporary mapped afresh (512 page faults each),
    the loop's setting makes the freed blocks come back from the heap instead."""
    import platform
    import subprocess
    import sys

    if platform.libc_ver()[0] != "glibc":
        return
    out = subprocess.run([sys.executable, "-c", FAULTS_PER_STEP], capture_output=True, text=True, check=True)
    kept, before, after = out.stdout.split()
    assert kept == "True"
    assert int(before) > 50 * 512 and int(after) < 50 * 64, (before, after)
