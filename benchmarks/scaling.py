"""Constants of the scaling model (docs/scaling.md) on this machine, and its check.

1. Collective costs with gloo on loopback: time of all_reduce, all_gather and all_to_all_single
   against payload size for W = 2 and 4 processes, fitted as alpha + bytes / beta.
2. One worker's time per step, split into score / select / exchange / train, from a real fit.
3. The model's prediction of ms/step for W = 2 and 4, against fits with W Ray workers.

    python benchmarks/scaling.py IMAGE [--side 256] [--steps 60] [--out scaling.json]
"""

import argparse
import json
import os
import socket
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

CORES = os.cpu_count() or 1
THREADS_ONE = torch.get_num_threads()  # threads of the single-worker fit (this process)
SIZES = [2**p for p in range(3, 25, 3)]  # 8 B … 16 MiB
REPEATS = 20


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _time_collectives(rank: int, world: int, port: int, out) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    rows = []
    for size in SIZES:
        n = max(1, size // 4)
        x = torch.ones(n)
        gathered = [torch.empty(n) for _ in range(world)]
        recv = torch.empty(n - n % world or world)
        send = torch.ones(recv.numel())
        ops = {
            "all_reduce": lambda x=x: dist.all_reduce(x),
            "all_gather": lambda g=gathered, x=x: dist.all_gather(g, x),
            "all_to_all": lambda r=recv, s=send: dist.all_to_all_single(r, s),
        }
        for name, op in ops.items():
            op()
            dist.barrier()
            start = time.perf_counter()
            for _ in range(REPEATS):
                op()
            rows.append((name, n * 4, (time.perf_counter() - start) / REPEATS))
    if rank == 0:
        out.put(rows)
    dist.destroy_process_group()


def collective_costs(world: int) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    port = _port()
    procs = [ctx.Process(target=_time_collectives, args=(r, world, port, queue)) for r in range(world)]
    for p in procs:
        p.start()
    rows = queue.get()
    for p in procs:
        p.join()
    fits = {}
    for name in ("all_reduce", "all_gather", "all_to_all"):
        sizes = np.array([b for n, b, _ in rows if n == name], dtype=np.float64)
        times = np.array([t for n, _, t in rows if n == name])
        slope, alpha = np.polyfit(sizes, times, 1)
        fits[name] = {"alpha_s": float(max(alpha, times.min())), "bytes_per_s": float(1 / max(slope, 1e-15)),
                      "samples": [(int(b), float(t)) for b, t in zip(sizes, times, strict=True)]}  # fmt: skip
    return fits


def fit_ms(image: Path, side: int, steps: int, workers: int, workdir: Path) -> dict:
    from nint_dist import launch

    run_dir = workdir / f"w{workers}"
    args = ["configs/quickstart.yaml", f"data.path={image}", f"run.dir={run_dir}", f"train.workers={workers}",
            f"train.steps={steps}", "sampler.name=nint", f"log.every={steps}", "log.progress=false",
            "log.tensorboard=false", "model.layers=4", "model.width=64"]  # fmt: skip
    if workers == 1:
        args.append("run.backend=local")
    assert launch.main(args) == 0
    final = json.loads((run_dir / "final.json").read_text())
    row = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    parts = {
        k: 1000 * final[f"total_{k}_s"] / final["steps"]
        for k in ("score", "select", "exchange", "train", "loop")
    }
    traffic = {k.split("/")[1]: v for k, v in row.items() if k.startswith("bytes_per_step/")}
    return {"ms_per_step": final["ms_per_step"], "parts_ms": parts, "bytes_per_step": traffic}


def predict_ms(one: dict, traffic: dict, costs: dict, workers: int, slowdown: float = 1.0) -> float:
    """docs/scaling.md: scoring and training split W ways, selection bookkeeping does not, and
    each collective costs alpha + bytes / beta per call. ``slowdown``: how much slower one
    worker's compute runs than the single worker's did (1 with a device per worker; on a
    shared CPU, the single worker's threads over each worker's share of the cores)."""
    parts = one["parts_ms"]
    replicated = parts["select"] + parts.get("loop", 0.0)  # every worker makes the whole selection
    compute = slowdown * ((parts["score"] + parts["train"]) / workers + replicated)
    calls = {"all_reduce": 1, "all_gather": 2, "all_to_all": 1}  # per step: see docs/scaling.md
    comm = 0.0
    for kind, count in calls.items():
        payload = traffic.get(kind, 0.0) + (
            traffic.get("ddp_gradients", 0.0) if kind == "all_reduce" else 0.0
        )
        comm += count * costs[kind]["alpha_s"] + payload / costs[kind]["bytes_per_s"]
    return compute + 1000 * comm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", type=Path)
    parser.add_argument("--side", type=int, default=256)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    from PIL import Image

    results: dict = {"collectives": {}, "fits": {}, "predicted_ms": {}}
    for world in (2, 4):
        results["collectives"][world] = collective_costs(world)
        for name, fit in results["collectives"][world].items():
            speed = fit["bytes_per_s"] / 1e9
            print(f"W={world} {name}: alpha {1e6 * fit['alpha_s']:.0f} us, {speed:.2f} GB/s", flush=True)
    import ray

    ray.init(num_cpus=8, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        with Image.open(args.image) as img:
            img.convert("RGB").resize((args.side, args.side), Image.LANCZOS).save(tmp / "image.png")
        for workers in (1, 2, 4):
            results["fits"][workers] = fit_ms(tmp / "image.png", args.side, args.steps, workers, tmp)
            print(f"W={workers}: {results['fits'][workers]}", flush=True)
    one = results["fits"][1]
    print("\n| W | predicted ms/step | measured ms/step |\n|---|---|---|")
    print(f"| 1 | {one['ms_per_step']:.1f} | {one['ms_per_step']:.1f} |")
    for workers in (2, 4):
        traffic = results["fits"][workers]["bytes_per_step"]
        share = min(1.0, CORES / workers)  # Ray gives each CPU worker one thread, fewer when oversubscribed
        predicted = predict_ms(one, traffic, results["collectives"][workers], workers, THREADS_ONE / share)
        results["predicted_ms"][workers] = predicted
        print(f"| {workers} | {predicted:.1f} | {results['fits'][workers]['ms_per_step']:.1f} |")
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
