"""How many operator calls a training step makes, phase by phase, and how many of them would
make the host wait for a GPU: counted on a CPU, for the GPU's sake.

On a GPU a small step is bound by launches, not arithmetic: every eager operator call is at
least one kernel launch (a few microseconds of host time each), and a call whose result the
host reads (``nonzero``, ``.item()``, a boolean-mask index, ...) stalls the queue until the GPU
has caught up. There the training pass and ``nint``'s pool ranking are replayed from CUDA
graphs (``train.cuda_graphs``); the selection runs eagerly, so its count is what a graph does
not remove. The epoch order (``order=epochs``, ``shuffled``) is one Triton kernel on CUDA
(``nint_dist.selection_triton``): the column ``as on CUDA`` counts it as one call and no wait,
``here`` as the PyTorch version that runs on a CPU.

Counted with a ``TorchDispatchMode`` over ``--steps`` steps after ``--warmup``, one process,
SIREN 6x256 at ratio 0.2 on an image (default: the bundled 192x128 sample).

    python benchmarks/step_ops.py [--image PNG] [--samplers uniform,nint,shuffled] [--out OUT.json]
"""

import argparse
import collections
import json
import tempfile
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes

import nint_dist.samplers.stream as stream
from nint_dist.bench import BUNDLED_SAMPLE, machine, prepare_signal
from nint_dist.config import load_config
from nint_dist.errors import run_cli
from nint_dist.training import Loop

SIREN = ["model.name=siren", "model.layers=6", "model.width=256", "train.lr=1e-4", "sampler.ratio=0.2",
         "train.micro_batch=262144"]  # one training pass, as on GPUs  # fmt: skip
WAITING = {"nonzero", "_local_scalar_dense", "masked_select", "unique", "_unique2", "unique_dim",
           "equal", "is_nonzero", "repeat_interleave"}  # fmt: skip
"""Operators whose result's size or value the host needs before it can go on."""


def waits(func, args) -> bool:
    name = func.__name__.split(".")[0]
    if name in WAITING:
        return True
    if name in ("index", "index_put", "index_put_"):  # a boolean mask: its count sizes the result
        indices = args[1] if len(args) > 1 else []
        return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices)
    return False


class Count(TorchDispatchMode):
    """Operator calls and host waits, by the step's phase (the loop's timer names them)."""

    def __init__(self):
        super().__init__()
        self.phase = "loop"
        self.calls: collections.Counter = collections.Counter()
        self.waits: collections.Counter = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls[self.phase] += 1
        self.waits[self.phase] += waits(func, args)
        return func(*args, **(kwargs or {}))


def count_steps(store: Path, run_dir: Path, sampler: str, warmup: int, steps: int, as_cuda: bool) -> dict:
    run_dir.mkdir(parents=True)
    cfg = load_config(None, [f"data.path={store}", f"run.dir={run_dir}", "run.backend=local", *SIREN,
                             f"sampler.name={sampler}", "train.steps=1000000", "log.tensorboard=false",
                             "log.progress=false", "log.every=1000000"])  # fmt: skip
    loop = Loop.in_process(cfg, "cpu")
    for _ in range(warmup):
        loop.step()
    count = Count()
    timer = loop.clock.timer
    lap = timer.lap

    def counted_lap(name: str) -> None:  # the calls since the last lap belong to phase `name`
        count.calls[name] += count.calls.pop("pending", 0)
        count.waits[name] += count.waits.pop("pending", 0)
        lap(name)

    timer.lap = counted_lap
    count.phase = "pending"
    order = stream.epoch_order

    def one_kernel(*args, **kwargs):
        with _disable_current_modes():
            out = order(*args, **kwargs)
        count.calls["pending"] += 1
        return out

    if as_cuda:
        stream.epoch_order = one_kernel
    try:
        with count:
            for _ in range(steps):
                loop.step()
    finally:
        stream.epoch_order, timer.lap = order, lap
    return {
        "calls": {k: v / steps for k, v in sorted(count.calls.items()) if k != "pending"},
        "waits": {k: v / steps for k, v in sorted(count.waits.items()) if k != "pending"},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, default=BUNDLED_SAMPLE)
    parser.add_argument("--samplers", default="uniform,nint,shuffled")
    parser.add_argument("--warmup", type=int, default=70, help="steps first (past nint's NTK phase)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    results = {"machine": machine(), "image": args.image.name, "settings": SIREN, "samplers": {}}
    with tempfile.TemporaryDirectory() as scratch:
        store = prepare_signal(args.image, None, Path(scratch))
        for sampler in args.samplers.split(","):
            here, cuda = (
                count_steps(store, Path(scratch) / f"{sampler}-{as_cuda}", sampler, args.warmup, args.steps,
                            as_cuda)
                for as_cuda in (False, True)
            )  # fmt: skip
            results["samplers"][sampler] = {"here": here, "as on CUDA": cuda}
    print("| sampler | phase | calls here | waits here | calls as on CUDA | waits as on CUDA |")
    print("|---|---|---|---|---|---|")
    for sampler, r in results["samplers"].items():
        for phase in r["here"]["calls"]:
            here, cuda = r["here"], r["as on CUDA"]
            print(f"| {sampler} | {phase} | {here['calls'][phase]:.0f} | {here['waits'][phase]:.1f}"
                  f" | {cuda['calls'].get(phase, 0):.0f} | {cuda['waits'].get(phase, 0):.1f} |")  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    run_cli(main)
