"""Per-step quality of nint-paper against uniform sampling on small photographs.

Each image is downscaled to 128 pixels on its long side (coordinates in [-1, 1], values in
[0, 1]) and fitted with SIREN 4x64, Adam 1e-3, ratio 0.2, 300 steps, through the project's
own training code (one worker in this process; the distributed run makes the same selections).

    python benchmarks/quality_bar.py IMAGES_DIR/kodak/*.png --out quality_bar.json
"""

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from PIL import Image

from nint_dist.config import load_config
from nint_dist.ingest import image_signal, write_signal
from nint_dist.worker import Runtime, run

SETTINGS = [
    "model.layers=4",
    "model.width=64",
    "train.lr=1e-3",
    "sampler.ratio=0.2",
    "train.steps=300",
    "log.tensorboard=false",
    "log.every=300",
    "run.backend=local",
    "train.device=cpu",
]


def downscale(src: Path, dst: Path, long_side: int = 128) -> None:
    with Image.open(src) as img:
        img = img.convert("RGB")
        scale = long_side / max(img.size)
        img.resize((round(img.width * scale), round(img.height * scale)), Image.LANCZOS).save(dst)


def fit(image: Path, sampler: str, seed: int, workdir: Path) -> float:
    run_dir = workdir / f"{image.stem}-{sampler}-{seed}"
    run_dir.mkdir()
    array, spec = image_signal(image)
    write_signal(array, spec, run_dir / "signal.zarr")
    cfg = load_config(
        None,
        [
            f"data.path={run_dir / 'signal.zarr'}",
            f"run.dir={run_dir}",
            f"sampler.name={sampler}",
            f"train.seed={seed}",
            *SETTINGS,
        ],
    )
    return run(cfg, Runtime(0, 1, __import__("torch").device("cpu")))["psnr"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("--samplers", nargs="+", default=["nint-paper", "uniform"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[42])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for image in args.images:
            small = tmp / f"{image.stem}.png"
            downscale(image, small)
            row = {"image": image.name}
            for sampler in args.samplers:
                row[sampler] = statistics.mean(fit(small, sampler, s, tmp) for s in args.seeds)
            rows.append(row)
            print(
                " ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
                flush=True,
            )
    means = {s: statistics.mean(r[s] for r in rows) for s in args.samplers}
    print("mean " + " ".join(f"{s}={v:.2f}" for s, v in means.items()))
    if args.out:
        args.out.write_text(json.dumps({"rows": rows, "mean": means}, indent=2))


if __name__ == "__main__":
    main()
