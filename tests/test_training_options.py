"""Training options: learning-rate schedules, precision, checkpoint cadence and retention,
SIGINT that keeps the run, ``--resume RUN_DIR``, the run.dir rule under RAY_ADDRESS, the
progress bar's ETA and SI-SNR for audio, and the modality configs."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from nint_dist import checkpoint, console, launch, metrics
from nint_dist.lr_schedule import lr_at
from tests.helpers import EXACT_FIT, REPO, checkpoint_params, launch_fit

LOCAL = ["run.backend=local", "train.workers=1", "log.progress=false", "log.tensorboard=false"]


def fit(signal_path: Path, run_dir: Path | str, *extra: str) -> int:
    return launch_fit(signal_path, run_dir, *LOCAL, *extra)


def rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def steps_of_checkpoints(run_dir: Path) -> list[int]:
    return sorted(int(p.name.split("_")[1]) for p in (run_dir / "checkpoints").glob("step_*"))


@pytest.mark.parametrize(
    "schedule, step, expected",
    [
        ("constant", 7, 1.0),
        ("cosine", 0, 1.0),  # warm-up 0: the schedule starts at lr
        ("cosine", 50, 0.55),  # half way: the mean of lr and lr_min
        ("cosine", 100, 0.1),
        ("step", 49, 1.0),
        ("step", 50, 0.5),  # milestones 0.5 and 0.75 of 100 steps, decay 0.5
        ("step", 80, 0.25),
        ("exponential", 50, 0.5**0.5),
        ("exponential", 100, 0.5),
    ],
)
def test_schedules_against_hand_values(schedule, step, expected):
    got = lr_at(schedule, step, 100, 1.0, 0, lr_min=0.1 if schedule == "cosine" else 0.0, decay=0.5,
                milestones=(0.5, 0.75))  # fmt: skip
    assert got == pytest.approx(expected)


def test_warm_up_rises_linearly_then_hands_over():
    assert [lr_at("cosine", t, 20, 2.0, warmup=4) for t in range(4)] == [0.5, 1.0, 1.5, 2.0]
    assert lr_at("cosine", 4, 20, 2.0, warmup=4) == pytest.approx(2.0)  # the cosine's start
    assert lr_at("cosine", 12, 20, 2.0, warmup=4) == pytest.approx(1.0)  # half of the 16 after


def test_the_run_trains_with_the_scheduled_rates(tiny_signal, tmp_path):
    """The rate each step used, logged per step, against the cosine formula written out here."""
    assert fit(tiny_signal, tmp_path / "run", *EXACT_FIT, "train.steps=8", "log.every=1",
               "train.lr_schedule=cosine", "train.warmup_steps=2", "train.lr_min=1e-4") == 0  # fmt: skip
    lr, lr_min = 1e-3, 1e-4
    expected = [lr / 2, lr] + [
        lr_min + (lr - lr_min) * 0.5 * (1 + math.cos(math.pi * t / 6)) for t in range(6)
    ]
    assert [r["lr"] for r in rows(tmp_path / "run")] == pytest.approx(expected, rel=1e-12)


def test_bf16_trains_and_differs_from_fp32(tiny_signal, tmp_path):
    common = ["model.layers=3", "model.width=16", "train.steps=30", "train.lr=1e-3", "log.every=30"]
    assert fit(tiny_signal, tmp_path / "fp32", *common) == 0
    assert fit(tiny_signal, tmp_path / "bf16", *common, "train.precision=bf16") == 0
    a, b = checkpoint_params(tmp_path / "fp32"), checkpoint_params(tmp_path / "bf16")
    assert 0 < ((a - b).norm() / a.norm()).item() < 0.1  # autocast was on, and it still trains alike
    psnr = [json.loads((tmp_path / d / "final.json").read_text())["psnr"] for d in ("fp32", "bf16")]
    assert abs(psnr[0] - psnr[1]) < 1.0


@pytest.mark.parametrize(
    "extra, message",
    [
        (["train.precision=fp16"], "needs GPUs"),
        (["train.precision=bf16", "train.dtype=float64"], "needs train.dtype=float32"),
        (["train.lr_schedule=linear"], "train.lr_schedule must be one of"),
        (["train.lr_milestones=[0.5,2]"], "train.lr_milestones"),
    ],
)
def test_precision_and_schedule_mistakes_are_one_line(tiny_signal, tmp_path, capsys, extra, message):
    assert fit(tiny_signal, tmp_path / "run", *extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]
    assert not (tmp_path / "run").exists()


def test_time_cadence_and_retention_of_checkpoints(tiny_signal, tmp_path):
    every_step = ["train.steps=5", "log.every=5", "train.checkpoint_every_s=1e-9"]
    assert fit(tiny_signal, tmp_path / "all", *every_step, "train.keep_checkpoints=0") == 0
    assert steps_of_checkpoints(tmp_path / "all") == [1, 2, 3, 4, 5]
    assert fit(tiny_signal, tmp_path / "two", *every_step, "train.keep_checkpoints=2") == 0
    assert steps_of_checkpoints(tmp_path / "two") == [4, 5]
    assert fit(tiny_signal, tmp_path / "off", *every_step[:2], "train.checkpoint_every_s=0") == 0
    assert steps_of_checkpoints(tmp_path / "off") == [5]


def launch_process(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("RAY_ADDRESS", None)
    return subprocess.Popen(
        [sys.executable, "-m", "nint_dist.launch", *args],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def interrupt_after_first_rows(
    proc: subprocess.Popen, run_dir: Path, timeout: float = 240
) -> tuple[str, str]:
    deadline = time.time() + timeout
    metrics_file = run_dir / "metrics.jsonl"
    while not (metrics_file.exists() and len(metrics_file.read_text().splitlines()) >= 2):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=timeout)
    return out, err


def test_ctrl_c_keeps_a_checkpoint_and_resume_continues_exactly(tiny_signal, tmp_path):
    """SIGINT mid-run: a checkpoint, no final files, exit 130; ``--resume RUN_DIR`` (no other
    argument than the longer step count) then ends with the parameters of an uninterrupted run."""
    common = [f"data.path={tiny_signal}", *LOCAL, *EXACT_FIT, "log.every=1", "train.steps=3000"]
    run_dir = tmp_path / "run"
    proc = launch_process("configs/quickstart.yaml", *common, f"run.dir={run_dir}")
    _, err = interrupt_after_first_rows(proc, run_dir)
    assert proc.returncode == 130, err
    assert f"--resume {run_dir}" in err and not (run_dir / "final.json").exists()
    stopped = checkpoint.latest(run_dir)
    stopped_at = int(stopped.name.split("_")[1])
    assert 2 <= stopped_at < 3000 and not (run_dir / ".stop").exists()
    total = stopped_at + 5
    assert launch.main(["--resume", str(run_dir), f"train.steps={total}", "log.progress=false"]) == 0
    assert json.loads((run_dir / "final.json").read_text())["steps"] == total
    assert fit(tiny_signal, tmp_path / "whole", *EXACT_FIT, "log.every=1", f"train.steps={total}") == 0
    a, b = checkpoint_params(tmp_path / "whole"), checkpoint_params(run_dir)
    assert ((a - b).norm() / a.norm()).item() < 1e-9
    assert [r["step"] for r in rows(run_dir)] == list(range(1, total + 1))


@pytest.mark.slow  # the launched process starts its own Ray instance
def test_ctrl_c_on_ray_keeps_a_checkpoint(tiny_signal, tmp_path):
    """The driver keeps SIGINT from Ray Train (which would abort without a checkpoint): the
    workers checkpoint at their next log step and the run ends resumable."""
    run_dir = tmp_path / "run"
    proc = launch_process(
        "configs/quickstart.yaml", f"data.path={tiny_signal}", f"run.dir={run_dir}", "train.workers=2",
        *EXACT_FIT, "log.every=2", "train.steps=100000", "log.progress=false", "log.tensorboard=false",
    )  # fmt: skip
    _, err = interrupt_after_first_rows(proc, run_dir, timeout=400)
    assert proc.returncode == 130, err[-3000:]
    stopped_at = int(checkpoint.latest(run_dir).name.split("_")[1])
    assert stopped_at >= 4 and stopped_at % 2 == 0  # at a log step
    assert not (run_dir / "final.json").exists()


def test_resume_without_a_checkpoint_starts_over(tiny_signal, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert fit(tiny_signal, run_dir, "train.steps=4", "log.every=2") == 0
    import shutil

    shutil.rmtree(run_dir / "checkpoints")
    (run_dir / "final.json").unlink()
    assert launch.main(["--resume", str(run_dir)]) == 0
    assert "from step 0" in capsys.readouterr().err
    assert [r["step"] for r in rows(run_dir)] == [2, 4]


def test_resume_of_a_folder_that_is_no_run(tmp_path, capsys):
    assert launch.main(["--resume", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_relative_run_dir_under_ray_address_is_refused(tiny_signal, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAY_ADDRESS", "http://127.0.0.1:1")
    code = launch.main(
        [str(REPO / "configs" / "quickstart.yaml"), f"data.path={tiny_signal}", "run.dir=runs/x"]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "run.dir=runs/x is relative" in err[0]
    assert not (tmp_path / "runs").exists()
    assert launch.main([str(REPO / "configs" / "quickstart.yaml"), f"data.path={tiny_signal}",
                        "run.dir=s3://bucket/run"]) == 2  # fmt: skip
    assert "object stores are not supported" in capsys.readouterr().err


def test_file_uri_run_dir_is_a_path(tiny_signal, tmp_path):
    target = tmp_path / "remote" / "run"
    assert fit(tiny_signal, target.as_uri(), "train.steps=2", "log.every=2") == 0
    assert (target / "final.json").is_file()
    assert json.loads((target / "plan.json").read_text())["run_dir"] == str(target.resolve())


def test_progress_eta_follows_the_time_budget():
    row = {"step": 10, "train_seconds": 2.0}
    assert console.expected_last_step(row, 1000, None) == 1000
    assert console.expected_last_step(row, 1000, 10.0) == 50  # 5 steps per second for 8 s more
    assert console.expected_last_step(row, 30, 10.0) == 30  # the step count comes first
    assert console.expected_last_step({"step": 10, "train_seconds": 12.0}, 1000, 10.0) == 10
    assert list(console.postfix({"psnr": 40.0, "si_snr": -3.0})) == ["si_snr", "psnr", "samples_per_s"]


def test_si_snr_from_sums_matches_the_direct_formula():
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(1000, 2))
    est = 0.7 * ref + 0.05 * rng.normal(size=ref.shape) + 0.3
    sums = (est.sum(), ref.sum(), (est * ref).sum(), (est**2).sum(), (ref**2).sum())
    assert metrics.si_snr_from_sums(est.size, *sums) == pytest.approx(metrics.si_snr(est, ref), abs=1e-9)


def write_tone(path: Path, rate: int = 8000, seconds: float = 0.5) -> Path:
    from nint_dist.sources.audio import write_wav

    t = np.arange(int(rate * seconds)) / rate
    write_wav(path, (0.5 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 660 * t))[:, None], rate)
    return path


def test_audio_config_logs_si_snr_and_a_preview(tmp_path):
    """configs/audio.yaml on a short tone: SI-SNR in every row (its sums over the shard) agrees
    with the one computed directly from the fitted model; TensorBoard holds the audio."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tone = write_tone(tmp_path / "tone.wav")
    run_dir = tmp_path / "run"
    assert launch.main(["configs/audio.yaml", f"data.path={tone}", f"run.dir={run_dir}", "run.backend=local",
                        "train.workers=1", "train.steps=30", "log.every=10", "log.progress=false",
                        "model.width=64"]) == 0  # fmt: skip
    import torch

    from nint_dist.render import load_run
    from nint_dist.signal import flat_to_coords, open_signal

    run = load_run(run_dir, torch.device("cpu"))  # the final checkpoint
    model, spec, dtype = run.model, run.spec, run.dtype
    array, _ = open_signal(run.plan.signal)
    with torch.no_grad():
        fitted = model(flat_to_coords(torch.arange(spec.num_points), spec, dtype)).double().numpy()
    lo, hi = spec.value_range
    direct = metrics.si_snr(fitted, (np.asarray(array[...], dtype=np.float64) - lo) / (hi - lo))
    assert rows(run_dir)[-1]["si_snr"] == pytest.approx(direct, abs=1e-6)  # sums over the shard
    assert "si_snr" in json.loads((run_dir / "final.json").read_text())
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"audio": 0})
    events.Reload()
    assert {"eval/reconstruction_audio", "eval/source_audio"} <= set(events.Tags()["audio"])
    assert "eval/si_snr" in events.Tags()["scalars"]


@pytest.mark.parametrize("name", ["audio", "volume"])
def test_modality_configs_load(name):
    from nint_dist.config import load_config

    cfg = load_config(REPO / "configs" / f"{name}.yaml", ["data.path=x"])
    assert cfg.train.steps > 0
