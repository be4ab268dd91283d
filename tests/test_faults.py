"""Faults: a worker killed mid-run, corrupt data, a worker that raises, oversubscription."""

import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from tests.helpers import EXACT_FIT, checkpoint_params, launch_fit, make_tiny_signal

SETTINGS = [
    *EXACT_FIT,
    "log.every=4",
    "log.progress=false",
    "log.tensorboard=false",
]


def fit(signal: Path, run_dir: Path, *extra: str) -> int:
    return launch_fit(signal, run_dir, *SETTINGS, *extra)


def test_worker_killed_mid_run_is_restarted_and_replays_exactly(ray_session, tiny_signal, tmp_path):
    steps = ["train.steps=40", "train.workers=2", "train.checkpoint_every=4"]
    assert fit(tiny_signal, tmp_path / "whole", *steps) == 0
    run_dir = tmp_path / "killed"
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.update(code=fit(tiny_signal, run_dir, *steps)))
    thread.start()
    pid_file = run_dir / "workers" / "rank_1.json"
    deadline = time.time() + 300
    while not (run_dir / "checkpoints" / "step_000004").exists() or not pid_file.exists():
        assert time.time() < deadline and thread.is_alive(), "the run ended before a checkpoint"
        time.sleep(0.05)
    victim = json.loads(pid_file.read_text())["pid"]
    os.kill(victim, signal.SIGKILL)
    thread.join(timeout=600)
    assert outcome.get("code") == 0
    assert json.loads(pid_file.read_text())["pid"] != victim  # a new worker finished the run
    final = json.loads((run_dir / "final.json").read_text())
    assert final["steps"] == 40
    a, b = checkpoint_params(tmp_path / "whole"), checkpoint_params(run_dir)
    assert ((a - b).norm() / a.norm()).item() < 1e-5
    whole_psnr = json.loads((tmp_path / "whole" / "final.json").read_text())["psnr"]
    assert abs(final["psnr"] - whole_psnr) < 0.1
    steps_logged = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps_logged == sorted(set(steps_logged))  # the dead attempt's rows were not kept twice


def test_corrupt_chunk_stops_the_run_naming_the_chunk(ray_session, tiny_signal, tmp_path, capsys):
    zarr.open_array(str(tiny_signal), mode="r+")[12:16] = 7  # rows of chunk row 3, behind the checksums
    code = fit(tiny_signal, tmp_path / "run", "train.steps=4", "train.workers=2", "train.max_failures=0")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err[-1].startswith("error: training failed") and "chunk row 3 (rows 12-15)" in err[-1]
    assert fit(tiny_signal, tmp_path / "skip", "train.steps=4", "train.workers=2", "data.verify=false") == 0


def test_eight_workers_on_two_cores_make_the_one_worker_selection(ray_session, tmp_path):
    signal_path = make_tiny_signal(tmp_path, rows=32, cols=12, chunk_rows=4)  # 8 chunk rows
    common = ["train.steps=5", "log.save_selection=true"]
    assert fit(signal_path, tmp_path / "one", *common, "run.backend=local", "train.workers=1") == 0
    assert fit(signal_path, tmp_path / "eight", *common, "train.workers=8") == 0
    for step in range(1, 6):
        name = f"selection/step_{step:06d}.npy"
        assert np.array_equal(np.load(tmp_path / "one" / name), np.load(tmp_path / "eight" / name))
    a, b = checkpoint_params(tmp_path / "one"), checkpoint_params(tmp_path / "eight")
    assert ((a - b).norm() / a.norm()).item() < 1e-9


@pytest.mark.parametrize("size", [0, 10])
def test_empty_and_truncated_images(tmp_path, capsys, size):
    from PIL import Image

    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "ok.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes((tmp_path / "ok.png").read_bytes()[:size])
    assert fit(bad, tmp_path / "run", "run.backend=local", "train.workers=1") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert not (tmp_path / "run").exists()
