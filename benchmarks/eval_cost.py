"""What a log step's evaluation costs against the training steps between two of them: PSNR
over the whole signal (``exact``, the evaluation at checkpoints and at the end, and at every
log step before the subset) and over the fixed subset of ``log.eval_points`` coordinates.
CPU seconds of one thread, so that other jobs on a shared machine do not enter the numbers.

    python benchmarks/eval_cost.py PHOTO --out OUT [--long-side 2048] [--steps 5] [--repeats 2]
"""

import argparse
import json
import time
from pathlib import Path

import torch

from nint_dist.config import load_config
from nint_dist.ingest import image_signal, write_signal
from nint_dist.worker import Runtime, Trainer

HASH = [
    "model.name=hashgrid",
    "model.layers=3",
    "model.width=64",
    "model.hashgrid.levels=16",
    "model.hashgrid.log2_size=19",
    "train.lr=1e-2",
    "sampler.name=uniform",
    "sampler.ratio=0.01",
    "log.tensorboard=false",
    "run.backend=local",
]


def cpu_seconds(action) -> float:
    start = time.process_time()
    action()
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photo", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--long-side", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=5, help="training steps timed")
    parser.add_argument("--repeats", type=int, default=2, help="evaluations timed of each kind")
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    small = args.out / "photo.png"
    with Image.open(args.photo) as img:
        scale = args.long_side / max(img.size)
        size = (round(img.width * scale), round(img.height * scale))
        img.convert("RGB").resize(size, Image.LANCZOS).save(small)
    store = args.out / "photo.zarr"
    if not store.exists():
        write_signal(*image_signal(small), store, progress=False)
    run_dir = args.out / "run"
    run_dir.mkdir(exist_ok=True)
    overrides = [
        f"data.path={store}",
        f"run.dir={run_dir}",
        f"model.hashgrid.max_resolution={args.long_side}",
        *HASH,
    ]
    trainer = Trainer(load_config(None, overrides), Runtime(0, 1, torch.device("cpu")))
    trainer.train_step()  # the first step's start-up is not a step's cost
    loss = torch.zeros(())
    step = min(cpu_seconds(trainer.train_step) for _ in range(args.steps))
    exact = min(cpu_seconds(lambda: trainer.evaluate(loss, exact=True)) for _ in range(args.repeats))
    subset = min(cpu_seconds(lambda: trainer.evaluate(loss, exact=False)) for _ in range(args.repeats))
    every = trainer.cfg.log.every
    results = {
        "photo": args.photo.name,
        "points": trainer.spec.num_points,
        "eval_points": trainer.cfg.log.eval_points,
        "samples_per_step": round(0.01 * trainer.spec.num_points),
        "cpu_s_per_step": step,
        "cpu_s_exact_evaluation": exact,
        "cpu_s_subset_evaluation": subset,
        "log_every": every,
        "exact_share_of_training": exact / (every * step),
        "subset_share_of_training": subset / (every * step),
    }
    print(json.dumps(results, indent=1))
    (args.out / "eval_cost.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
