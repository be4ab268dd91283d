"""The training clock and the evaluation on a wall-clock budget: a step that would overrun
``train.max_seconds`` is not started; log steps measure PSNR on a fixed subset, the end on the
whole signal; ``wall_seconds`` stands beside ``train_seconds``."""

import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from nint_dist import checkpoint
from nint_dist.config import load_config
from nint_dist.models import build_model
from nint_dist.samplers import Sampler
from nint_dist.signal import open_signal
from nint_dist.steptimer import PhaseTimer
from nint_dist.training import Loop
from nint_dist.training.evaluation import eval_subset

TINY = ["model.layers=3", "model.width=16", "train.lr=1e-3", "log.tensorboard=false", "run.backend=local"]


def trainer(signal: Path, run_dir: Path, *extra: str) -> Loop:
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = load_config(None, [f"data.path={signal}", f"run.dir={run_dir}", *TINY, *extra])
    return Loop.in_process(cfg, "cpu")


class Uneven(Sampler):
    """Every fourth step is dear (the stand-in for an NTK refresh), the others cheap."""

    def __init__(self, inner: Sampler, every: int = 4, seconds: float = 0.3):
        self.inner, self.every, self.seconds = inner, every, seconds

    def select(self, ctx, step):
        if step % self.every == self.every - 1:
            time.sleep(self.seconds)
        return self.inner.select(ctx, step)


def test_a_budget_is_respected_when_steps_differ_in_cost(tiny_signal, tmp_path):
    budget = 2.5
    t = trainer(
        tiny_signal,
        tmp_path / "run",
        "sampler.name=uniform",
        "train.steps=100000",
        f"train.max_seconds={budget}",
        "log.every=10",
    )
    t.sampler = Uneven(t.sampler)  # the dear steps are far dearer than a busy machine's hiccups
    final = t.run()
    assert final["steps"] < 100000
    assert final["train_seconds"] <= budget  # the old rule (stop once past it) always overran
    assert final["train_seconds"] > budget - 3 * 0.3  # and did not stop far too early
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["wall_seconds"] >= r["train_seconds"] for r in rows)
    assert final["wall_seconds"] >= final["train_seconds"] + final["eval_seconds"]


def test_the_dearest_step_skips_the_first_and_sees_every_later_one():
    timer = PhaseTimer(torch.device("cpu"))
    for pause in (0.6, 0.0, 0.0, 0.3):  # four steps; the first one's cost is start-up
        timer.lap("loop")
        time.sleep(pause)
        timer.lap("train")
    assert 0.0 < timer.dearest_step < 0.3  # the block is open: its last step is not yet measured
    timer.close()
    assert 0.3 <= timer.dearest_step < 0.6


def squared_errors(signal: Path, model: torch.nn.Module) -> np.ndarray:
    """Per-point Σ_c (f(x) − y)² over the whole signal, from the stored array: coordinates on
    the [-1, 1] grid, targets divided by 255 (an image store)."""
    array, _ = open_signal(str(signal))
    values = np.asarray(array[:], dtype=np.float64) / 255.0
    rows, cols = values.shape[:2]
    yy, xx = np.meshgrid(np.linspace(-1, 1, rows), np.linspace(-1, 1, cols), indexing="ij")
    coords = torch.tensor(np.stack([yy, xx], -1).reshape(-1, 2), dtype=torch.float32)
    with torch.no_grad():
        prediction = model(coords).double().numpy()
    return ((prediction - values.reshape(-1, values.shape[-1])) ** 2).sum(-1)


def test_the_log_psnr_is_that_of_a_fixed_subset_and_the_exact_one_of_all(tiny_signal, tmp_path):
    t = trainer(
        tiny_signal, tmp_path / "run", "sampler.name=uniform", "train.steps=20", "log.eval_points=100"
    )
    for _ in range(5):
        _, loss = t.step()
    t.clock.close_block()
    rows = t.evaluation.rows.numpy()
    assert len(set(rows.tolist())) == 100 and rows.min() >= 0 and rows.max() < 24 * 20
    assert np.array_equal(rows, eval_subset(t.ctx, 100, t.cfg.train.seed).numpy())  # fixed: from the seed
    errors = squared_errors(tiny_signal, t.model)
    subset, whole = t.evaluate(loss, exact=False), t.evaluate(loss, exact=True)
    assert subset["psnr_points"] == 100 and whole["psnr_points"] == 24 * 20
    assert math.isclose(subset["mse"], errors[rows].sum() / (100 * 3), rel_tol=1e-5)
    assert math.isclose(whole["mse"], errors.sum() / (24 * 20 * 3), rel_tol=1e-5)
    assert not math.isclose(subset["mse"], whole["mse"], rel_tol=1e-3)


def test_the_final_psnr_is_exact(tiny_signal, tmp_path):
    run = tmp_path / "run"
    t = trainer(
        tiny_signal, run, "sampler.name=uniform", "train.steps=30", "log.every=10", "log.eval_points=50"
    )
    final = t.run()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["psnr_points"] for r in rows] == [50, 50, 480]
    cfg = t.cfg
    model = build_model(2, 3, cfg.model)
    model.load_state_dict(checkpoint.load(checkpoint.latest(str(run)))["model"])
    mse = squared_errors(tiny_signal, model).sum() / (480 * 3)
    assert math.isclose(final["psnr"], 10 * math.log10(1 / mse), rel_tol=1e-5)
    assert final["wall_seconds"] >= final["train_seconds"]


def test_log_steps_are_skipped_while_evaluation_exceeds_its_share(tiny_signal, tmp_path):
    def rows_of(run: Path, share: str) -> list[int]:
        t = trainer(
            tiny_signal,
            run,
            "sampler.name=uniform",
            "train.steps=30",
            "log.every=1",
            f"log.eval_share={share}",
        )
        final = t.run()
        assert final["eval_seconds"] > 0
        return [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]

    assert rows_of(tmp_path / "all", "0") == list(range(1, 31))  # 0: no limit
    thinned = rows_of(tmp_path / "thinned", "1e-6")
    assert thinned[0] == 1 and thinned[-1] == 30 and len(thinned) < 10  # the first and the end stay


def test_wall_seconds_carry_across_a_resume(tiny_signal, tmp_path):
    run = tmp_path / "run"
    first = trainer(tiny_signal, run, "sampler.name=uniform", "train.steps=5", "log.every=5").run()
    saved = checkpoint.load(checkpoint.latest(str(run)))["wall_seconds"]
    assert first["wall_seconds"] >= saved > first["train_seconds"]
    resumed = trainer(tiny_signal, run, "sampler.name=uniform", "train.steps=8", "log.every=5")
    assert resumed.steps_done == 5 and resumed.clock.wall() > saved
    assert resumed.run()["wall_seconds"] > saved
