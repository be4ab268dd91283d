"""Scale benchmark: generation and ingestion MB/s, scoring coordinates/s per worker and peak
memory per worker for synthetic images of 16 MP, 268 MP and 1 GP, plus the memory-growth check
(a full training step on 2048² and on 4096²). Every measurement of memory runs in a fresh
process (``resource.getrusage`` max RSS).

    python benchmarks/scale.py --dir /scratch/scale            # all sizes (needs ~7 GB of disk)
    python benchmarks/scale.py --dir /scratch/scale --sides 4096 --growth
"""

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path


def max_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def store_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def probe_scoring(
    store: str, workers: int, rank: int, coords: int, layers: int, width: int, chunk: int
) -> dict:
    """One worker: load its shard, then score ``coords`` of its coordinates (VJP + JVP)."""
    import torch

    from nint_dist import scoring
    from nint_dist.config import ModelConfig
    from nint_dist.models import build_model
    from nint_dist.shard import load_shard
    from nint_dist.signal import open_signal

    torch.manual_seed(0)
    array, spec = open_signal(store)
    t0 = time.perf_counter()
    shard = load_shard(array, spec, workers, rank, torch.device("cpu"), torch.float32)
    load_s = time.perf_counter() - t0
    model = build_model(len(spec.grid), spec.channels, ModelConfig(layers=layers, width=width))
    n = min(coords, shard.size)
    t0 = time.perf_counter()
    v = scoring.residual_vjp(model, shard.coords, shard.targets, n, chunk)
    scoring.ntk_scores(model, v, shard.coords, n, chunk)
    score_s = time.perf_counter() - t0
    return {
        "shard_bytes": shard.values.numel() * shard.values.element_size(),
        "load_s": load_s,
        "score_coords_per_s": n / score_s,
        "max_rss_bytes": max_rss_bytes(),
    }


def probe_step(store: str, run_dir: str, layers: int, width: int, chunk: int, steps: int) -> dict:
    """A whole training step (nint-paper: full residual ranking and NTK scoring) on one worker."""
    import torch

    from nint_dist.config import load_config
    from nint_dist.worker import Runtime, Trainer

    overrides = [f"data.path={store}", f"run.dir={run_dir}", "run.backend=local", "log.tensorboard=false",
                 f"model.layers={layers}", f"model.width={width}", f"sampler.pass_size={chunk}",
                 f"train.steps={steps}", "sampler.name=nint-paper"]  # fmt: skip
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    trainer = Trainer(load_config(None, overrides), Runtime(0, 1, torch.device("cpu")))
    base = max_rss_bytes()
    t0 = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    return {
        "shard_bytes": trainer.shard.values.numel() * trainer.shard.values.element_size(),
        "step_s": (time.perf_counter() - t0) / steps,
        "rss_after_setup_bytes": base,
        "max_rss_bytes": max_rss_bytes(),
    }


def in_fresh_process(kind: str, **kwargs) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--probe", kind, json.dumps(kwargs)], capture_output=True, text=True
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_size(folder: Path, side: int, args) -> dict:
    from nint_dist.generate import generate
    from nint_dist.ingest import ingest

    made, again = folder / f"gen_{side}.zarr", folder / f"ingested_{side}.zarr"
    for p in (made, again):
        shutil.rmtree(p, ignore_errors=True)
    raw_mb = side * side * 3 / 1e6
    t0 = time.perf_counter()
    generate(made, (side, side), channels=3, progress=False)
    gen_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ingest(made, again, progress=False)
    ingest_s = time.perf_counter() - t0
    row = {"side": side, "megapixels": side * side / 1e6, "generate_MB_per_s": raw_mb / gen_s,
           "ingest_MB_per_s": raw_mb / ingest_s, "stored_MB": store_bytes(again) / 1e6}  # fmt: skip
    shutil.rmtree(made)
    for workers in args.workers:
        probe = in_fresh_process("scoring", store=str(again), workers=workers, rank=0, coords=args.coords,
                                 layers=args.layers, width=args.width, chunk=args.chunk)  # fmt: skip
        row[f"w{workers}"] = probe
    shutil.rmtree(again)
    return row


def bench_growth(folder: Path, args) -> dict:
    from nint_dist.generate import generate

    rows = {}
    for side in (2048, 4096):
        store = folder / f"growth_{side}.zarr"
        shutil.rmtree(store, ignore_errors=True)
        shutil.rmtree(folder / f"run_{side}", ignore_errors=True)
        generate(store, (side, side), channels=3, progress=False)
        rows[side] = in_fresh_process("step", store=str(store), run_dir=str(folder / f"run_{side}"),
                                      layers=args.step_layers, width=args.step_width, chunk=args.chunk,
                                      steps=1)  # fmt: skip
        shutil.rmtree(store)
        shutil.rmtree(folder / f"run_{side}", ignore_errors=True)
    small, large = rows[2048], rows[4096]
    bound = 1.5 * small["max_rss_bytes"] + (large["shard_bytes"] - small["shard_bytes"])
    return {
        "2048": small,
        "4096": large,
        "bound_bytes": bound,
        "within_bound": large["max_rss_bytes"] <= bound,
    }


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--probe":
        kwargs = json.loads(sys.argv[3])
        print(json.dumps((probe_scoring if sys.argv[2] == "scoring" else probe_step)(**kwargs)))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True, help="scratch folder for the stores (deleted after use)")
    parser.add_argument("--sides", type=int, nargs="*", default=[4096, 16384, 32768])
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 16], help="W for the per-worker probes")
    parser.add_argument("--coords", type=int, default=1 << 17, help="coordinates scored per probe")
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--chunk", type=int, default=65536, help="scoring chunk (65536: the default on GPUs)")
    parser.add_argument("--growth", action="store_true", help="also the 2048² → 4096² memory check")
    parser.add_argument("--step-layers", type=int, default=4)
    parser.add_argument("--step-width", type=int, default=64)
    args = parser.parse_args()
    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    for side in args.sides:
        print(json.dumps(bench_size(folder, side, args)), flush=True)
    if args.growth:
        print(json.dumps({"growth": bench_growth(folder, args)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
