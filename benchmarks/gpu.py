"""NINT on the clock: uniform, the reference sampler and the tuned ``nint`` on one GPU.

Runs the project's single-worker path in this process (no Ray needed): DIV2K ``01.png`` and
Kodak ``kodim01.png`` with SIREN 6x256, Adam 1e-4, ratio 0.2, 2000 steps, evaluation every
20 steps off the training clock. Prints one row per variant (ms/step split, time to
25/30/35 dB, PSNR at 2000 steps) and, last, the targets of the tuned sampler.

    python benchmarks/gpu.py --images DIR --out OUT [--steps 2000] [--budget-s 420]
"""

import argparse
import json
import time
from pathlib import Path

import torch

from nint_dist.config import load_config
from nint_dist.ingest import image_signal, write_signal
from nint_dist.worker import Runtime, Trainer

TARGETS_DB = (25.0, 30.0, 35.0)
REFERENCE_UNIFORM_S = {30.0: 2.32, 35.0: 10.5}  # design §8, 01.png, one H100
VARIANTS = [
    ("01.png", "uniform", ["sampler.name=uniform"]),
    ("01.png", "nint", ["sampler.name=nint"]),
    ("01.png", "nint-paper", ["sampler.name=nint-paper"]),
    ("01.png", "nint pool=N fp16", ["sampler.name=nint", "sampler.pool_factor=0"]),
    ("01.png", "nint pool=3k fp32", ["sampler.name=nint", "sampler.score_precision=full"]),
    ("01.png", "uniform +compile", ["sampler.name=uniform", "train.compile=true"]),
    ("01.png", "nint +compile", ["sampler.name=nint", "train.compile=true"]),
    ("kodim01.png", "uniform", ["sampler.name=uniform"]),
    ("kodim01.png", "nint", ["sampler.name=nint"]),
    ("kodim01.png", "nint-paper", ["sampler.name=nint-paper"]),
]


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


def run_variant(signal: Path, run_dir: Path, overrides: list[str], settings: list[str]) -> dict:
    run_dir.mkdir(parents=True)
    cfg = load_config(None, [f"data.path={signal}", f"run.dir={run_dir}", *settings, *overrides])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    trainer = Trainer(cfg, Runtime(0, 1, device))
    final = trainer.fit()
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = max(final["steps"], 1)
    return {
        "ms_per_step": final["ms_per_step"],
        "ms_score_select": 1000 * final["total_score_select_s"] / steps,
        "ms_exchange": 1000 * final["total_exchange_s"] / steps,
        "ms_train": 1000 * final["total_train_s"] / steps,
        "compile_s": final.get("compile_seconds", 0.0),
        "psnr_final": final["psnr"],
        "steps": final["steps"],
        **{f"s_to_{int(t)}": time_to(rows, t) for t in TARGETS_DB},
        "curve": [(r["step"], r["train_seconds"], r["psnr"]) for r in rows],
    }


def ranking_overlap(signal: Path, run_dir: Path, settings: list[str], steps: int) -> dict:
    """How much float16 scoring moves the residual ranking: top-6% overlap with full precision."""
    run_dir.mkdir(parents=True)
    cfg = load_config(
        None,
        [
            f"data.path={signal}",
            f"run.dir={run_dir}",
            *settings,
            "sampler.name=uniform",
            f"train.steps={steps}",
            "log.every=1000000",
        ],
    )
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    trainer = Trainer(cfg, Runtime(0, 1, device))
    for _ in range(steps):
        trainer.train_step()
    full = trainer.ctx.residual_l1(half=False)
    half = trainer.ctx.residual_l1(half=True)
    k = max(1, int(0.06 * full.numel()))
    top_full = set(torch.topk(full, k).indices.tolist())
    top_half = set(torch.topk(half, k).indices.tolist())
    return {
        "after_steps": steps,
        "k": k,
        "overlap": len(top_full & top_half) / k,
        "max_abs_diff": float((full - half).abs().max()),
    }


def fmt(value, spec=".2f") -> str:
    return "—" if value is None else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, required=True, help="folder with 01.png and kodim01.png")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--budget-s", type=float, default=420.0, help="skip variants after this many seconds")
    parser.add_argument("--model", default="model.layers=6,model.width=256")
    args = parser.parse_args()
    started = time.time()
    settings = [
        *args.model.split(","),
        "train.lr=1e-4",
        "sampler.ratio=0.2",
        f"train.steps={args.steps}",
        "log.every=20",
        "log.tensorboard=false",
        "log.progress=false",
        "run.backend=local",
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    signals = {}
    for name in sorted({image for image, _, _ in VARIANTS}):
        array, spec = image_signal(args.images / name)
        signals[name] = args.out / f"{Path(name).stem}.zarr"
        if not signals[name].exists():
            write_signal(array, spec, signals[name])
    device_name = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    results: dict = {"device": device_name, "torch": torch.__version__, "steps": args.steps, "runs": []}
    try:
        results["ranking"] = ranking_overlap(signals["01.png"], args.out / "ranking", settings, 200)
        print("fp16 ranking check:", results["ranking"], flush=True)
    except Exception as e:  # a failed check must not cost the timing runs
        results["ranking"] = {"error": repr(e)}
    for i, (image, label, overrides) in enumerate(VARIANTS):
        if time.time() - started > args.budget_s:
            print(f"skipped {image} {label}: over the time budget", flush=True)
            continue
        try:
            r = run_variant(signals[image], args.out / f"run{i}", overrides, settings)
        except Exception as e:
            print(f"{image} {label} failed: {e!r}", flush=True)
            continue
        results["runs"].append({"image": image, "variant": label, **r})
        print(
            f"{image} {label}: {r['ms_per_step']:.2f} ms/step, to 30 dB {fmt(r['s_to_30'])} s, "
            f"to 35 dB {fmt(r['s_to_35'])} s, PSNR {r['psnr_final']:.2f}",
            flush=True,
        )
        (args.out / "gpu_results.json").write_text(json.dumps(results, indent=1))
    print_tables(results)


def print_tables(results: dict) -> None:
    print(f"\n## {results['device']}, torch {results['torch']}, {results['steps']} steps\n")
    print(
        "| image | variant | ms/step | score+select | exchange | train | s to 25 dB | s to 30 dB "
        "| s to 35 dB | PSNR end |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results["runs"]:
        print(
            f"| {r['image']} | {r['variant']} | {r['ms_per_step']:.2f} | {r['ms_score_select']:.2f} "
            f"| {r['ms_exchange']:.2f} | {r['ms_train']:.2f} | {fmt(r['s_to_25'])} | {fmt(r['s_to_30'])} "
            f"| {fmt(r['s_to_35'])} | {r['psnr_final']:.2f} |"
        )
    by = {(r["image"], r["variant"]): r for r in results["runs"]}
    print("\n### Targets (01.png)\n")
    print("| target | measured | limit | met |")
    print("|---|---|---|---|")
    for nint_label, uniform_label in (("nint", "uniform"), ("nint +compile", "uniform +compile")):
        nint, uniform = by.get(("01.png", nint_label)), by.get(("01.png", uniform_label))
        if not nint or not uniform:
            continue
        for db in (30, 35):
            got = nint[f"s_to_{db}"]
            for limit, what in (
                (0.6 * REFERENCE_UNIFORM_S[db], "0.6× reference uniform"),
                (
                    None if uniform[f"s_to_{db}"] is None else 0.8 * uniform[f"s_to_{db}"],
                    f"0.8× {uniform_label}",
                ),
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
