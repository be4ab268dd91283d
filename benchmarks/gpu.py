"""NINT on the clock, and large signals, on one GPU — in one process, without Ray.

Part 1 (the targets, under 5 minutes): DIV2K ``01.png`` and Kodak ``kodim01.png`` with SIREN
6x256, Adam 1e-4, ratio 0.2, 2000 steps, evaluation every 20 steps off the training clock; one
row per variant (ms/step split into score/select/exchange/train, time to 25/30/35 dB, PSNR at
2000 steps), a profile of the tuned sampler's steps with the lines that make the host wait, and
how much TF32/float16 scoring moves the ranking. Variants run in order of priority until
``--budget-s`` is spent. The target table is printed last.
Part 2 (capacity, ``--large-seconds S``): a 14.7 MP photograph and a generated 268 MP signal
(16384², generated on the CPU while part 1 runs), each with SIREN and with the hash grid for S
seconds of training (the issue's figure is 150; with model loading and a final evaluation each
run takes about S + 25 s).

    python benchmarks/gpu.py --images DIR --out OUT [--budget-s 270] [--large-seconds 150 [--skip-table]]
"""

import argparse
import json
import math
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

from nint_dist.config import load_config
from nint_dist.ingest import image_signal, write_signal
from nint_dist.worker import Runtime, Trainer

TARGETS_DB = (25.0, 30.0, 35.0)
REFERENCE_UNIFORM_S = {30.0: 2.32, 35.0: 10.5}  # the reference code, uniform sampling, 01.png, one H100
SMALL = ["model.layers=6", "model.width=256", "train.lr=1e-4", "sampler.ratio=0.2", "log.every=20"]
VARIANTS = [  # (image, label, overrides), in order of priority
    ("01.png", "uniform", ["sampler.name=uniform"]),
    ("01.png", "nint", ["sampler.name=nint"]),
    ("01.png", "nint-paper", ["sampler.name=nint-paper"]),
    ("01.png", "uniform, tf32", ["sampler.name=uniform", "train.tf32=true"]),
    ("01.png", "nint, tf32", ["sampler.name=nint", "train.tf32=true"]),
    ("kodim01.png", "uniform", ["sampler.name=uniform"]),
    ("kodim01.png", "nint", ["sampler.name=nint"]),
    ("01.png", "nint, scoring tf32", ["sampler.name=nint", "sampler.score_precision=tf32"]),
    ("01.png", "nint, pool 2k", ["sampler.name=nint", "sampler.pool_factor=2"]),
    ("01.png", "nint, no NTK share", ["sampler.name=nint", "sampler.ntk_share=0"]),
]
PHASES = ("score", "select", "exchange", "train", "loop")
BATCH = 2**18  # samples per step on the large signals (at most 5% of them)
MODELS = {
    "siren 6x256": ["model.name=siren", "model.layers=6", "model.width=256", "train.lr=1e-4"],
    "hash grid 16 levels + 3x64": [
        "model.name=hashgrid",
        "model.layers=3",
        "model.width=64",
        "model.hash_levels=16",
        "model.hash_features=2",
        "train.lr=1e-2",
    ],
}


class NoExportTrainer(Trainer):
    """The worker's Trainer without the final reconstruction files (minutes for 268 MP)."""

    def write_reconstruction(self) -> dict[str, float]:
        return {}


def time_to(rows: list[dict], target: float) -> float | None:
    """Training seconds at which PSNR first reaches ``target`` (linear between evaluations)."""
    prev = {"train_seconds": 0.0, "psnr": 0.0}
    for row in rows:
        if row["psnr"] >= target:
            span = row["psnr"] - prev["psnr"]
            frac = (target - prev["psnr"]) / span if span > 0 else 1.0
            return prev["train_seconds"] + frac * (row["train_seconds"] - prev["train_seconds"])
        prev = row
    return None


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def run_variant(signal: Path, run_dir: Path, settings: list[str]) -> dict:
    run_dir.mkdir(parents=True)
    cfg = load_config(None, [f"data.path={signal}", f"run.dir={run_dir}", *settings])
    if device().type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    final = NoExportTrainer(cfg, Runtime(0, 1, device())).fit()
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = max(final["steps"], 1)
    return {
        "ms_per_step": final["ms_per_step"],
        **{f"ms_{phase}": 1000 * final[f"total_{phase}_s"] / steps for phase in PHASES},
        "psnr_final": final["psnr"],
        "steps": final["steps"],
        "train_seconds": final["train_seconds"],
        "peak_memory_gb": final["peak_memory_max_bytes"] / 1e9,
        **{f"s_to_{int(t)}": time_to(rows, t) for t in TARGETS_DB},
        "curve": [(r["step"], r["train_seconds"], r["psnr"]) for r in rows],
    }


def ranking_overlap(signal: Path, run_dir: Path, steps: int) -> dict:
    """How much TF32 and float16 scoring move the residual ranking: top-6% overlap with full
    precision after ``steps`` uniform steps."""
    run_dir.mkdir(parents=True)
    settings = [*SMALL, "sampler.name=uniform", f"train.steps={steps}", "log.every=1000000"]
    cfg = load_config(None, [f"data.path={signal}", f"run.dir={run_dir}", *settings])
    trainer = Trainer(cfg, Runtime(0, 1, device()))
    for _ in range(steps):
        trainer.train_step()
    full = trainer.ctx.residual_l1("full")
    k = max(1, int(0.06 * full.numel()))
    top_full = set(torch.topk(full, k).indices.tolist())
    out = {"after_steps": steps, "k": k}
    for precision in ("tf32", "half"):
        other = trainer.ctx.residual_l1(precision)
        out[precision] = {
            "overlap": len(top_full & set(torch.topk(other, k).indices.tolist())) / k,
            "max_abs_diff": float((full - other).abs().max()),
        }
    return out


def profile_steps(signal: Path, run_dir: Path, steps: int = 20) -> str:
    """Where a ``nint`` step spends its time on the device and on the host."""
    from torch.profiler import ProfilerActivity, profile

    run_dir.mkdir(parents=True)
    settings = [*SMALL, "sampler.name=nint", "train.steps=1000", "log.every=1000000"]
    cfg = load_config(None, [f"data.path={signal}", f"run.dir={run_dir}", *settings])
    trainer = Trainer(cfg, Runtime(0, 1, device()))
    for _ in range(80):  # past the NTK refreshes of the first calls
        trainer.train_step()
    trainer.close_block()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    host = time.perf_counter()
    with profile(activities=activities) as prof:
        for _ in range(steps):
            trainer.train_step()
        spans = trainer.close_block()
    host = time.perf_counter() - host
    syncs: dict[str, int] = {}
    if torch.cuda.is_available():  # which lines of a step make the host wait for the GPU
        torch.cuda.set_sync_debug_mode("warn")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(steps):
                trainer.train_step()
            torch.cuda.set_sync_debug_mode("default")
        for w in caught:
            where = f"{Path(w.filename).name}:{w.lineno}"
            syncs[where] = syncs.get(where, 0) + 1
    sort = "self_cuda_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
    head = (
        f"{steps} nint steps: {1000 * host / steps:.2f} ms/step on the host clock (profiler on); "
        + ", ".join(f"{k} {1000 * v / steps:.2f}" for k, v in spans.items())
        + " ms/step on the device\n"
    )
    head += f"host synchronisations in {steps} steps, by line: {syncs}\n"
    return head + prof.key_averages().table(sort_by=sort, row_limit=25)


def large_runs(signals: dict[str, Path], out: Path, seconds: float, results: dict, save) -> None:
    for name, signal in signals.items():
        import zarr

        num_points = math.prod(zarr.open_array(str(signal), mode="r").shape[:-1])
        ratio = min(BATCH / num_points, 0.05)
        for model, overrides in MODELS.items():
            grid_side = max(zarr.open_array(str(signal), mode="r").shape[:-1])
            table_log2 = max(12, min(22, math.ceil(math.log2(num_points)) - 4))  # 14.7 MP: 2^20
            settings = [
                *overrides,
                f"model.hash_max_resolution={grid_side}",
                f"model.hash_log2_size={table_log2}",
                "sampler.name=nint",
                f"sampler.ratio={ratio}",
                "sampler.chunk=262144",
                "train.steps=1000000",
                f"train.max_seconds={seconds}",
                "log.every=1000000" if num_points > 50e6 else "log.every=500",
            ]
            label = f"{name} {model}"
            t0 = time.time()
            try:
                r = run_variant(signal, out / f"large-{len(results['large'])}", settings)
            except Exception as e:  # one failed run must not cost the others
                print(f"{label} failed: {e!r}", flush=True)
                continue
            r.update(signal=name, model=model, num_points=num_points, wall_s=time.time() - t0)
            r.update(batch=round(ratio * num_points), hash_log2_size=table_log2)
            results["large"].append(r)
            save()
            print(
                f"{label}: {r['steps']} steps in {r['train_seconds']:.1f} s ({r['ms_per_step']:.1f} ms/step),"
                f" PSNR {r['psnr_final']:.2f}, peak {r['peak_memory_gb']:.1f} GB",
                flush=True,
            )


def fmt(value, spec=".2f") -> str:
    return "—" if value is None else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, required=True, help="01.png, kodim01.png and the large photo")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--budget-s", type=float, default=270.0, help="wall seconds for part 1's runs")
    parser.add_argument(
        "--large-seconds", type=float, default=0.0, help="part 2: training seconds per run (0: skip)"
    )
    parser.add_argument("--skip-table", action="store_true", help="part 2 only")
    parser.add_argument(
        "--large", default="safelanding_5120x2880.jpg", help="part 2's photograph in --images"
    )
    parser.add_argument("--generated", default="16384x16384", help="part 2's generated grid ('' to skip)")
    args = parser.parse_args()
    started = time.time()
    args.out.mkdir(parents=True, exist_ok=True)
    generated = args.out / "generated.zarr"
    maker = None
    if args.large_seconds > 0 and args.generated and not generated.exists():  # CPU work, beside part 1
        maker = subprocess.Popen(
            [sys.executable, "-m", "nint_dist.generate", str(generated), "--shape", args.generated],
            stdout=subprocess.DEVNULL,
        )
    images = [] if args.skip_table else sorted({image for image, _, _ in VARIANTS})
    signals = {}
    for name in [*images, *([args.large] if args.large_seconds > 0 else [])]:
        signals[name] = args.out / f"{Path(name).stem}.zarr"
        if not signals[name].exists():
            write_signal(*image_signal(args.images / name), signals[name], progress=False)
    name = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    results: dict = {"device": name, "torch": torch.__version__, "steps": args.steps, "runs": [], "large": []}

    def save() -> None:
        (args.out / "gpu_results.json").write_text(json.dumps(results, indent=1))

    if not args.skip_table:
        table(args, signals, started, results, save)
    if args.large_seconds > 0:
        large = {f"{Path(args.large).stem}": signals[args.large]}
        if maker is not None and maker.wait() == 0 or generated.exists():
            large[f"generated {args.generated}"] = generated
        large_runs(large, args.out, args.large_seconds, results, save)
    print_tables(results)


def table(args, signals: dict[str, Path], started: float, results: dict, save) -> None:
    """Part 1: the variants on the small images, in order of priority until the budget is spent."""
    try:
        results["ranking"] = ranking_overlap(signals["01.png"], args.out / "ranking", 200)
        print("ranking check:", results["ranking"], flush=True)
    except Exception as e:  # a failed check must not cost the timing runs
        results["ranking"] = {"error": repr(e)}
    for i, (image, label, overrides) in enumerate(VARIANTS):
        if time.time() - started > args.budget_s:
            print(f"skipped {image} {label}: over the time budget", flush=True)
            continue
        settings = [*SMALL, f"train.steps={args.steps}", *overrides]
        try:
            r = run_variant(signals[image], args.out / f"run{i}", settings)
        except Exception as e:
            print(f"{image} {label} failed: {e!r}", flush=True)
            continue
        results["runs"].append({"image": image, "variant": label, **r})
        save()
        print(
            f"{image} {label}: {r['ms_per_step']:.2f} ms/step, to 30 dB {fmt(r['s_to_30'])} s, "
            f"to 35 dB {fmt(r['s_to_35'])} s, PSNR {r['psnr_final']:.2f}",
            flush=True,
        )
        if label == "nint":
            try:
                results["profile"] = profile_steps(signals[image], args.out / f"profile{i}")
                (args.out / "profile.txt").write_text(results["profile"])
                print(results["profile"].splitlines()[0], flush=True)
            except Exception as e:
                print(f"profile failed: {e!r}", flush=True)


def print_tables(results: dict) -> None:
    print(f"\n## {results['device']}, torch {results['torch']}, {results['steps']} steps\n")
    print(
        "| image | variant | ms/step | score | select | exchange | train | loop | s to 25 dB | s to 30 dB "
        "| s to 35 dB | PSNR end |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results["runs"]:
        print(
            f"| {r['image']} | {r['variant']} | {r['ms_per_step']:.2f} | {r['ms_score']:.2f} "
            f"| {r['ms_select']:.2f} | {r['ms_exchange']:.2f} | {r['ms_train']:.2f} | {r['ms_loop']:.2f} "
            f"| {fmt(r['s_to_25'])} "
            f"| {fmt(r['s_to_30'])} | {fmt(r['s_to_35'])} | {r['psnr_final']:.2f} |"
        )
    if results["large"]:
        print("\n### Large signals (sampler nint, 2^18 samples per step)\n")
        print("| signal | model | training s | steps | ms/step | PSNR | peak GB |")
        print("|---|---|---|---|---|---|---|")
        for r in results["large"]:
            print(
                f"| {r['signal']} | {r['model']} | {r['train_seconds']:.0f} | {r['steps']} "
                f"| {r['ms_per_step']:.1f} | {r['psnr_final']:.2f} | {r['peak_memory_gb']:.1f} |"
            )
    by = {(r["image"], r["variant"]): r for r in results["runs"]}
    print("\n### Targets (01.png)\n")
    print("| target | measured | limit | met |")
    print("|---|---|---|---|")
    for nint_label, uniform_label in (("nint", "uniform"), ("nint, tf32", "uniform, tf32")):
        nint, uniform = by.get(("01.png", nint_label)), by.get(("01.png", uniform_label))
        if not nint or not uniform:
            continue
        for db in (30, 35):
            got = nint[f"s_to_{db}"]
            own = uniform[f"s_to_{db}"]
            for limit, what in (
                (0.6 * REFERENCE_UNIFORM_S[db], "0.6× reference uniform"),
                (None if own is None else 0.8 * own, f"0.8× {uniform_label}"),
            ):
                met = "yes" if got is not None and limit is not None and got <= limit else "no"
                print(f"| {nint_label}: s to {db} dB vs {what} | {fmt(got)} | {fmt(limit)} | {met} |")
    paper = by.get(("01.png", "nint-paper"))
    if paper and by.get(("01.png", "nint")):
        gap = by[("01.png", "nint")]["psnr_final"] - paper["psnr_final"]
        print(
            f"| nint PSNR at {results['steps']} steps minus nint-paper's | {gap:+.2f} dB | ≥ −0.30 dB "
            f"| {'yes' if gap >= -0.3 else 'no'} |"
        )


if __name__ == "__main__":
    main()
