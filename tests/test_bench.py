"""The benchmark harness: its curve arithmetic on hand-made curves, SSIM against a direct
computation, and whole runs of ``python -m nint_dist.bench`` on real images (the paper preset
on CPU with two steps)."""

import csv
import json

import numpy as np
import pytest

from nint_dist import bench
from nint_dist.metrics import psnr_from_mse, ssim


def test_time_to_reach_interpolates_between_evaluations():
    seconds, psnr = [1.0, 2.0, 3.0], [20.0, 24.0, 28.0]
    assert bench.time_to_reach(seconds, psnr, 25.0) == pytest.approx(2.25)
    assert bench.time_to_reach(seconds, psnr, 19.0) == 1.0  # already there at the first evaluation
    assert bench.time_to_reach(seconds, psnr, 30.0) is None
    assert bench.time_to_reach([1.0, 2.0], [26.0, 24.0], 25.0) == 1.0  # the first crossing counts


def test_value_at_is_none_outside_the_curve():
    assert bench.value_at([10, 20], [1.0, 3.0], 15) == pytest.approx(2.0)
    assert (
        bench.value_at([10, 20], [1.0, 3.0], 25) is None and bench.value_at([10, 20], [1.0, 3.0], 5) is None
    )


def _run(strategy, seed, seconds, psnr):
    steps = [10 * (i + 1) for i in range(len(seconds))]
    curve = {"step": steps, "seconds": seconds, "psnr": psnr, "ssim": [0.5] * len(psnr)}
    return {"signal": "img", "strategy": strategy, "seed": seed, "ms_per_step": 2.0 * seed, "curve": curve}


def test_summary_and_table_mark_seeds_that_never_got_there():
    preset = bench.Preset({}, [], [1, 2], [], at_steps=[20], at_seconds=[1.5])
    runs = [_run("a", 1, [1.0, 2.0], [24.0, 26.0]), _run("a", 2, [1.0, 2.0], [22.0, 24.0])]
    cell = bench.summarise(runs, preset)["img"]["a"]
    assert cell["s_to_25dB"] == (pytest.approx(1.5), 1)
    assert cell["psnr_at_20_steps"] == (pytest.approx(25.0), 2)
    assert cell["psnr_at_1.5_s"] == (pytest.approx((25.0 + 23.0) / 2), 2)
    assert cell["ms_per_step"] == pytest.approx(3.0)
    table = bench.markdown_tables(bench.summarise(runs, preset), preset)
    assert "| a | 3.0 | 1.50 (1/2) | — | — | 25.00 | 24.00 | 25.00 | 0.5000 |" in table


def _direct_ssim(a, b):
    """SSIM by explicit 11×11 Gaussian windows (Wang et al.), one position at a time."""
    g = np.exp(-(np.arange(-5, 6) ** 2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    values = []
    for c in range(a.shape[2]):
        for i in range(a.shape[0] - 10):
            for j in range(a.shape[1] - 10):
                x, y = a[i : i + 11, j : j + 11, c], b[i : i + 11, j : j + 11, c]
                mx, my = (w * x).sum(), (w * y).sum()
                vx, vy = (w * (x - mx) ** 2).sum(), (w * (y - my) ** 2).sum()
                cov = (w * (x - mx) * (y - my)).sum()
                values.append(
                    (2 * mx * my + 1e-4) * (2 * cov + 9e-4) / ((mx**2 + my**2 + 1e-4) * (vx + vy + 9e-4))
                )
    return float(np.mean(values))


def test_ssim_matches_a_direct_computation():
    rng = np.random.default_rng(0)
    a = rng.random((18, 15, 3))
    b = np.clip(a + 0.1 * rng.standard_normal(a.shape), 0, 1)
    assert ssim(a, b) == pytest.approx(_direct_ssim(a, b), rel=1e-9)
    assert ssim(a, a) == pytest.approx(1.0)


def test_bench_runs_strategies_through_the_trainer(tmp_path):
    out = tmp_path / "out"
    argv = ["--preset", "smoke", "--strategies", "uniform", "soft", "--steps", "6", "--set", "log.every=3"]
    assert bench.main([*argv, "--out", str(out)]) == 0
    for name in ("results.json", "curves.csv", "tables.md", "kodim05@48.png"):
        assert (out / name).stat().st_size > 0, name
    results = json.loads((out / "results.json").read_text())
    assert [r["strategy"] for r in results["runs"]] == ["uniform", "soft"]
    for run in results["runs"]:
        final = json.loads((out / "runs" / f"kodim05@48-{run['strategy']}-42" / "final.json").read_text())
        curve = run["curve"]
        assert curve["step"] == [3, 6]
        assert curve["train_seconds"][-1] == pytest.approx(final["train_seconds"])  # evaluation off the clock
        assert curve["seconds"] == curve["train_seconds"]  # the smoke preset times on the wall clock
        assert 0 < curve["cpu_seconds"][0] < curve["cpu_seconds"][1]
        assert curve["psnr"][-1] == pytest.approx(psnr_from_mse(final["mse"]))
        assert all(0 < s < 1 for s in curve["ssim"])
    with open(out / "curves.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and {r["strategy"] for r in rows} == {"uniform", "soft"}
    assert "**kodim05@48**" in (out / "tables.md").read_text()
    # a second call reuses the finished runs instead of training again
    stamp = (out / "runs" / "kodim05@48-soft-42" / "final.json").stat().st_mtime_ns
    assert bench.main([*argv, "--out", str(out)]) == 0
    assert (out / "runs" / "kodim05@48-soft-42" / "final.json").stat().st_mtime_ns == stamp


def test_gpu_paper_preset_starts_on_cpu(tmp_path):
    """On a generated 512x512 image laid out where the preset looks for DIV2K's first crop."""
    from PIL import Image

    data = tmp_path / "data"
    (data / "images" / "div2k").mkdir(parents=True)
    yy, xx = np.mgrid[0:512, 0:512]
    pattern = np.stack([xx // 2, yy // 2, (xx + yy) // 4], -1) % 256
    Image.fromarray(pattern.astype(np.uint8)).save(data / "images" / "div2k" / "01.png")
    argv = ["--preset", "gpu-paper", "--strategies", "uniform", "--signals", "div2k-01", "--steps", "2"]
    argv += ["--warmup-steps", "0"]
    assert (
        bench.main(
            [
                *argv,
                "--set",
                "log.every=2",
                "train.max_seconds=null",  # the preset's 10 s budget can end a loaded CPU's run at step 1
                "--device",
                "cpu",
                "--data",
                str(data),
                "--out",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    run = json.loads((tmp_path / "out" / "results.json").read_text())["runs"][0]
    assert run["final"]["num_points"] == 512 * 512 and run["curve"]["step"] == [2]


def test_bench_refuses_an_unknown_strategy(tmp_path, capsys):
    argv = ["--strategies", "nope", "--out", str(tmp_path)]
    assert bench.main(argv) == 2
    assert capsys.readouterr().err.startswith("error: unknown strategy 'nope'")


def test_a_preset_on_a_data_folder_asks_for_it(tmp_path, capsys):
    assert bench.main(["--preset", "cpu", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the cpu preset reads images/div2k/01.png") and "--data" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def _equal_seconds_module():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "benchmarks" / "equal_seconds.py"
    spec = importlib.util.spec_from_file_location("equal_seconds", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_equal_seconds_takes_median_times_and_interpolates_the_reference():
    from nint_dist.errors import UserError

    eq = _equal_seconds_module()
    repeats = [
        {"step": [10, 20], "psnr": [25.0, 30.0], "seconds": s} for s in ([1.0, 2.0], [3.0, 4.0], [2.0, 9.0])
    ]
    assert eq.median_curve(repeats)["seconds"] == [2.0, 4.0]
    with pytest.raises(UserError):
        eq.median_curve([repeats[0], {**repeats[1], "psnr": [25.0, 30.5]}])
    reference = {"step": [10, 20, 30], "psnr": [26.0, 28.0, 29.0], "seconds": [1.0, 3.0, 5.0]}
    ends_at = lambda seconds: {"step": [5], "psnr": [29.5], "seconds": [seconds]}  # noqa: E731
    assert eq.reference_at_end(ends_at(2.0), reference) == pytest.approx(27.0)
    assert eq.reference_at_end(ends_at(6.0), reference) is None
    assert eq.parse_variant("nint:sampler.nint.pool_factor=2,train.lr=1e-3") == (
        "nint",
        ["sampler.nint.pool_factor=2", "train.lr=1e-3"],
    )


def test_runs_are_reused_only_for_the_same_config_and_code(tmp_path):
    out = tmp_path / "out"  # the smoke preset fits the bundled sample
    argv = ["--preset", "smoke", "--strategies", "uniform", "--steps", "2", "--warmup-steps", "0"]
    argv += ["--out", str(out)]
    final = out / "runs" / "kodim05@48-uniform-42" / "final.json"
    assert bench.main([*argv, "--set", "log.every=1"]) == 0
    stamp = final.stat().st_mtime_ns
    assert bench.main([*argv, "--set", "log.every=1"]) == 0
    assert final.stat().st_mtime_ns == stamp  # same config, same code: reused
    assert bench.main([*argv, "--set", "log.every=1", "train.lr=5e-3"]) == 0
    assert final.stat().st_mtime_ns != stamp  # another learning rate: trained again
    key_file = final.parent / bench.RUN_KEY
    key = json.loads(key_file.read_text())
    assert key["config"]["train"]["lr"] == 5e-3
    stamp = final.stat().st_mtime_ns
    key_file.write_text(json.dumps({**key, "version": "0.0.0"}))  # made by another version
    assert bench.main([*argv, "--set", "log.every=1", "train.lr=5e-3"]) == 0
    assert final.stat().st_mtime_ns != stamp


def test_a_failing_strategy_is_recorded_not_dropped(tmp_path):
    out = tmp_path / "out"
    argv = ["--preset", "smoke", "--strategies", "uniform", "soft", "--steps", "2", "--warmup-steps", "0"]
    argv += ["--set", "log.every=1", "sampler.ratio_schedule=linear"]  # soft refuses a changing ratio
    assert bench.main([*argv, "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert [r["strategy"] for r in results["runs"]] == ["uniform"]
    assert [(f["strategy"], f["seed"]) for f in results["failed"]] == [("soft", 42)]
    assert "ratio_schedule=constant" in results["failed"][0]["error"]
    assert "Failed: kodim05@48 soft seed 42" in (out / "tables.md").read_text()


def test_step_ops_counts_waits_and_the_epoch_order_as_one_call(tmp_path):
    """benchmarks/step_ops.py on a tiny signal: a boolean-mask index waits, an integer one does
    not; ``shuffled`` reads the epoch order, so counted as on CUDA its selection shrinks to a few
    calls and no wait, while uniform's is the same either way."""
    import importlib.util
    import sys
    from pathlib import Path

    import torch

    from tests.helpers import make_tiny_signal

    path = Path(__file__).parents[1] / "benchmarks" / "step_ops.py"
    spec = importlib.util.spec_from_file_location("step_ops", path)
    ops = importlib.util.module_from_spec(spec)
    sys.modules["step_ops"] = ops
    spec.loader.exec_module(ops)
    x = torch.arange(6)
    assert ops.waits(torch.ops.aten.index.Tensor, (x, [x > 2]))
    assert not ops.waits(torch.ops.aten.index.Tensor, (x, [x[:2]]))
    assert ops.waits(torch.ops.aten.nonzero.default, (x,))
    assert not ops.waits(torch.ops.aten.sort.default, (x,))
    store = make_tiny_signal(tmp_path)
    counts = {
        (sampler, cuda): ops.count_steps(store, tmp_path / f"{sampler}-{cuda}", sampler, 1, 2, cuda)
        for sampler in ("shuffled", "uniform")
        for cuda in (False, True)
    }
    here, kernel = counts["shuffled", False], counts["shuffled", True]
    assert here["waits"]["select"] > 0 and here["calls"]["select"] > 50
    assert kernel["waits"]["select"] == 0 and kernel["calls"]["select"] < 10
    assert counts["uniform", False] == counts["uniform", True]
