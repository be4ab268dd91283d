"""Sampler variants against uniform sampling at equal training seconds, on the bench's `cpu` preset.

Each variant fits every signal and seed of the preset for its steps; uniform sampling fits the
same signals and seeds for ``--reference-steps`` (longer, so that its curve reaches the other
runs' end times). A variant's score is its final PSNR minus uniform's PSNR at the same number of
CPU seconds, interpolated on uniform's curve.

On a shared machine the clock is the noisy part: the PSNR curves repeat exactly from run to run
(one thread, fixed seeds; checked here), the seconds do not. So every run is repeated
``--repeats`` times, the repeats interleaved (round r runs every variant once before round r + 1
starts), and each evaluation's time is the median over the repeats.

    python benchmarks/equal_seconds.py nint nint:sampler.nint.pool_factor=2 --data DATA --repeats 3 \
        --out eqsec

A variant is ``STRATEGY[:KEY=VALUE,KEY=VALUE...]``. Writes ``equal_seconds.json`` and prints a
markdown table.
"""

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

from nint_dist.bench import PRESETS, machine, one_line, parse_variant, prepare_signal, run_one, value_at
from nint_dist.errors import UserError, run_cli


def median_curve(curves: list[dict]) -> dict:
    """Steps and PSNR of the first repeat (checked equal in all), seconds the median per evaluation."""
    first = curves[0]
    for other in curves[1:]:
        if other["step"] != first["step"] or not np.allclose(other["psnr"], first["psnr"], atol=1e-6):
            raise UserError("repeats of one run differ in PSNR: the runs are not deterministic")
    seconds = [statistics.median(values) for values in zip(*(c["seconds"] for c in curves), strict=True)]
    return {"step": first["step"], "psnr": first["psnr"], "seconds": seconds}


def reference_at_end(variant: dict, reference: dict) -> float | None:
    """The reference's PSNR at the variant's final seconds (None past the reference's end)."""
    return value_at(reference["seconds"], reference["psnr"], variant["seconds"][-1])


def equal_seconds(args: argparse.Namespace) -> int:
    import torch

    preset = PRESETS["cpu"]
    torch.set_num_threads(preset.threads or 1)
    variants = {text: parse_variant(text) for text in args.variants}
    out = Path(args.out)
    (out / "signals").mkdir(parents=True, exist_ok=True)
    stores = {
        label: prepare_signal(Path(args.data) / rel, side, out / "signals")
        for label, (rel, side) in preset.signals.items()
    }
    runs = {"uniform": ("uniform", [f"train.steps={args.reference_steps}"])} | variants
    curves: dict[tuple[str, str, int], list[dict]] = {}
    failed: dict[str, str] = {}
    for repeat in range(args.repeats):
        for name, (strategy, settings) in runs.items():
            for label, store in stores.items():
                for seed in preset.seeds:
                    tag = f"{label}-{name.replace(':', '_').replace('=', '-').replace(',', '_')}-{seed}"
                    if name in failed:
                        continue
                    try:
                        result = run_one(
                            store,
                            out / "runs" / f"r{repeat}" / tag,
                            strategy,
                            seed,
                            [*preset.overrides, *settings],
                            "cpu",
                            preset.clock,
                        )
                    except Exception as e:  # recorded as the variant's result, not dropped
                        failed[name] = f"{label} seed {seed}: {one_line(e)}"
                        print(f"repeat {repeat}: {name} failed: {failed[name]}", file=sys.stderr)
                        continue
                    curves.setdefault((name, label, seed), []).append(result["curve"])
                    print(
                        f"repeat {repeat}: {name} {label} seed {seed}: {result['ms_per_step']:.1f} ms/step",
                        file=sys.stderr,
                    )

    if "uniform" in failed:
        raise RuntimeError(f"the uniform reference failed: {failed['uniform']}")
    medians = {key: median_curve(value) for key, value in curves.items()}
    rows = []
    for name in variants:
        if name in failed:
            rows.append({"variant": name, "error": failed[name], "runs": {}, "mean_delta": None})
            continue
        deltas = {}
        for label in stores:
            for seed in preset.seeds:
                v, u = medians[(name, label, seed)], medians[("uniform", label, seed)]
                uniform_psnr = reference_at_end(v, u)
                deltas[f"{label}/{seed}"] = {
                    "psnr": v["psnr"][-1],
                    "seconds": v["seconds"][-1],
                    "ms_per_step": 1000 * v["seconds"][-1] / v["step"][-1],
                    "uniform_psnr": uniform_psnr,
                    "delta": None if uniform_psnr is None else v["psnr"][-1] - uniform_psnr,
                }
        known = [d["delta"] for d in deltas.values() if d["delta"] is not None]
        rows.append(
            {"variant": name, "runs": deltas, "mean_delta": statistics.mean(known) if known else None}
        )
    uniform_ms = {
        f"{label}/{seed}": 1000 * medians[("uniform", label, seed)]["seconds"][-1] / args.reference_steps
        for label in stores
        for seed in preset.seeds
    }
    result = {
        "machine": machine(),
        "command": "python benchmarks/equal_seconds.py " + " ".join(args.argv),
        "preset": "cpu",
        "repeats": args.repeats,
        "reference_steps": args.reference_steps,
        "uniform_ms_per_step": uniform_ms,
        "rows": rows,
    }
    (out / "equal_seconds.json").write_text(json.dumps(result, indent=1) + "\n")
    print(markdown(rows))
    return 0


def markdown(rows: list[dict]) -> str:
    keys = next((list(row["runs"]) for row in rows if row["runs"]), [])
    lines = [
        "| variant | " + " | ".join(keys) + " | mean |",
        "|---|" + "---|" * (len(keys) + 1),
    ]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['variant']} | failed: {row['error']} |" + " |" * len(keys))
            continue
        cells = []
        for key in keys:
            d = row["runs"][key]
            if d["delta"] is None:
                cells.append(f"{d['psnr']:.2f} at {d['seconds']:.1f} s (beyond uniform's run)")
            else:
                cells.append(
                    f"{d['psnr']:.2f} vs {d['uniform_psnr']:.2f} at {d['seconds']:.1f} s ({d['delta']:+.2f})"
                )
        mean = "—" if row["mean_delta"] is None else f"{row['mean_delta']:+.2f} dB"
        lines.append(f"| {row['variant']} | " + " | ".join(cells) + f" | {mean} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "variants", nargs="+", help="STRATEGY[:KEY=VALUE,...], e.g. nint:sampler.nint.pool_factor=2"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--reference-steps", type=int, default=1000, help="uniform sampling's steps")
    parser.add_argument("--data", required=True, help="folder of the test signals (images/div2k/01.png, …)")
    parser.add_argument("--out", default="equal-seconds")
    args = parser.parse_args(argv)
    args.argv = argv
    if args.repeats < 1 or args.reference_steps < 1:
        parser.error("--repeats and --reference-steps must be positive")
    return run_cli(lambda: equal_seconds(args))


if __name__ == "__main__":
    sys.exit(main())
