"""Per-step quality of sampler variants on small photographs.

Each image is downscaled to 128 pixels on its long side (coordinates in [-1, 1], values in
[0, 1]) and fitted with SIREN 4x64, Adam 1e-3, ratio 0.2, 300 steps, through the project's
own training code (one worker per process, one torch thread; the distributed run makes the
same selections); ``--jobs`` fits several images at once. A variant is
``STRATEGY[:KEY=VALUE,...]``; a variant that fails on an image is recorded with its error, not
dropped.

    python benchmarks/quality_bar.py DATA/images/kodak/*.png DATA/images/div2k/*.png \\
        --variants nint-paper nint-paper:sampler.nint_paper.ntk_score=reference-code \\
        nint-paper:sampler.nint_paper.ntk_share=0 uniform --out quality_bar.json
"""

import argparse
import json
import multiprocessing
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from PIL import Image

from nint_dist.bench import machine, parse_variant
from nint_dist.config import load_config
from nint_dist.ingest import image_signal, write_signal
from nint_dist.plan import RunPlan
from nint_dist.worker import Runtime, run

SETTINGS = [
    "model.layers=4",
    "model.width=64",
    "train.lr=1e-3",
    "sampler.ratio=0.2",
    "train.steps=300",
    "log.tensorboard=false",
    "log.progress=false",
    "log.every=300",
    "run.backend=local",
    "train.device=cpu",
]


def downscale(src: Path, dst: Path, long_side: int = 128) -> None:
    with Image.open(src) as img:
        img = img.convert("RGB")
        scale = long_side / max(img.size)
        img.resize((round(img.width * scale), round(img.height * scale)), Image.LANCZOS).save(dst)


def fit(image: Path, variant: str, seed: int, workdir: Path) -> float:
    strategy, overrides = parse_variant(variant)
    run_dir = Path(tempfile.mkdtemp(prefix=f"{image.stem}-{strategy}-{seed}-", dir=workdir))
    array, spec = image_signal(image)
    write_signal(array, spec, run_dir / "signal.zarr", progress=False)
    cfg = load_config(
        None,
        [
            f"data.path={run_dir / 'signal.zarr'}",
            f"run.dir={run_dir}",
            f"sampler.name={strategy}",
            f"train.seed={seed}",
            *SETTINGS,
            *overrides,
        ],
    )
    plan = RunPlan.split(
        spec,
        run_dir=str(run_dir),
        signal=str(run_dir / "signal.zarr"),
        source=str(image.resolve()),
        workers=1,
        backend="local",
        device="cpu",
    )
    return run(cfg, plan, Runtime(0, 1, torch.device("cpu")))["psnr"]


def fit_image(job: tuple[Path, list[str], list[int]]) -> tuple[dict, list[dict]]:
    """Every variant on one image (one torch thread): its row and the variants that failed."""
    image, variants, seeds = job
    torch.set_num_threads(1)
    row: dict = {"image": image.name}
    failed = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        small = tmp / f"{image.stem}.png"
        downscale(image, small)
        for variant in variants:
            try:
                row[variant] = statistics.mean(fit(small, variant, s, tmp) for s in seeds)
            except Exception as e:  # recorded, not dropped: a variant that fails is a result
                row[variant] = None
                failed.append({"image": image.name, "variant": variant, "error": f"{type(e).__name__}: {e}"})
    return row, failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("--variants", nargs="+", default=["nint-paper", "uniform"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[42])
    parser.add_argument("--jobs", type=int, default=1, help="images fitted at once, one process each")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    jobs = [(image, args.variants, args.seeds) for image in args.images]
    rows, failed = [], []
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        for row, errors in pool.imap(fit_image, jobs):  # rows in the order of the images
            rows.append(row)
            failed.extend(errors)
            print(
                " ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
                flush=True,
            )
            if args.out:  # after every image: an interrupted run keeps what it measured
                write_results(args, rows, failed)
    print("mean " + " ".join(f"{v}={m:.2f}" for v, m in means_of(rows, args.variants).items()))


def means_of(rows: list[dict], variants: list[str]) -> dict[str, float]:
    """Mean PSNR of each variant over the images where it did not fail."""
    return {
        v: statistics.mean(r[v] for r in rows if r[v] is not None)
        for v in variants
        if any(r[v] is not None for r in rows)
    }


def write_results(args: argparse.Namespace, rows: list[dict], failed: list[dict]) -> None:
    result = {
        "machine": machine(),
        "command": "python benchmarks/quality_bar.py IMAGES "
        + " ".join(a for a in sys.argv[1:] if Path(a) not in args.images),
        "images": [f"{p.parent.name}/{p.name}" for p in args.images],
        "complete": len(rows) == len(args.images),
        "settings": SETTINGS,
        "seeds": args.seeds,
        "rows": rows,
        "mean": means_of(rows, args.variants),
        "failed": failed,
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
