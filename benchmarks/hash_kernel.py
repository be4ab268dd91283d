"""The Triton hash-grid kernels against the PyTorch grid on one device: agreement of the compiled
kernels (forward, table and coordinate gradients, J·v) and milliseconds per phase.

Made for a GPU machine (expected under a minute on one card, kernel compilation included); on a
CPU it runs the kernels under Triton's interpreter (set ``TRITON_INTERPRET=1``) with a few
points, as a smoke test only — interpreter times mean nothing.

    python benchmarks/hash_kernel.py --out hash_kernel.json            # GPU: 2^18 points, 2^20 table
    TRITON_INTERPRET=1 python benchmarks/hash_kernel.py --points 512 --log2-size 12 --out smoke.json

Phases, per backend and table read precision: ``forward`` (encoding and MLP), ``train`` (forward,
backward, fused Adam over all parameters), ``jvp`` (``torch.func.jvp`` in the parameters along a
random tangent, the NTK pass of NINT), ``adam`` (the fused Adam step alone).
"""

import argparse
import json
import time
from collections.abc import Callable

import torch

from nint_dist.devices import resolve_device
from nint_dist.models.hashgrid import HashGrid


def timed_ms(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median milliseconds of ``fn`` after two warm-up calls (the kernels compile on the first)."""
    for _ in range(2):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1e3)
    return sorted(times)[len(times) // 2]


def relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    scale = expected.float().abs().max().clamp(min=1e-30)
    return ((got.float() - expected.float()).abs().max() / scale).item()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--points", type=int, default=2**18)
    parser.add_argument("--dim", type=int, default=2)
    parser.add_argument("--levels", type=int, default=16)
    parser.add_argument("--log2-size", type=int, default=20)
    parser.add_argument("--max-resolution", type=int, default=5120)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    device = resolve_device()
    torch.manual_seed(0)
    kwargs = dict(layers=3, width=64, levels=args.levels, log2_size=args.log2_size, features=2,
                  max_resolution=args.max_resolution)  # fmt: skip
    reference = HashGrid(args.dim, 3, **kwargs).to(device)
    torch.nn.init.uniform_(reference.tables, -1, 1)
    coords = torch.rand(args.points, args.dim, device=device) * 2 - 1
    targets = torch.rand(args.points, 3, device=device)
    tangent = {n: torch.randn_like(p) for n, p in reference.named_parameters()}
    result: dict = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu (interpreter)",
        "torch": torch.__version__, "points": args.points, "dim": args.dim,
        "levels": args.levels, "log2_size": args.log2_size, "table_rows": reference.tables.shape[0],
        "phases_ms": {}, "agreement": {},
    }  # fmt: skip
    outputs = {}
    variants = [(backend, dtype) for dtype in ("float32", "float16") for backend in ("torch", "triton")]
    for backend, dtype in variants:
        model = HashGrid(args.dim, 3, backend=backend, table_dtype=dtype, **kwargs).to(device)
        model.load_state_dict(reference.state_dict())
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-12, fused=device.type == "cuda")
        params = {n: p.detach() for n, p in model.named_parameters()}
        buffers = dict(model.named_buffers())

        def as_function(p, model=model, buffers=buffers):
            return torch.func.functional_call(model, {**p, **buffers}, (coords,))

        def train(model=model, optimizer=optimizer):
            optimizer.zero_grad(set_to_none=True)
            (model(coords) - targets).pow(2).mean().backward()
            optimizer.step()

        x = coords.clone().requires_grad_(True)
        model.zero_grad(set_to_none=True)
        (model(x) - targets).pow(2).mean().backward()
        with torch.no_grad():
            forward = model(coords)
        jvp = torch.func.jvp(as_function, (params,), (tangent,))[1]
        outputs[backend, dtype] = (forward, model.tables.grad.clone(), x.grad.clone(), jvp)
        name = f"{backend}/{dtype}"
        with torch.no_grad():
            forward_ms = timed_ms(lambda model=model: model(coords), device, args.repeats)
        result["phases_ms"][name] = {
            "forward": forward_ms,
            "train": timed_ms(train, device, args.repeats),
            "jvp": timed_ms(lambda f=as_function, p=params: torch.func.jvp(f, (p,), (tangent,)), device,
                            args.repeats),  # fmt: skip
            "adam": timed_ms(optimizer.step, device, args.repeats),
        }
        print(name, json.dumps(result["phases_ms"][name]), flush=True)
    for dtype in ("float32", "float16"):
        parts = zip(("forward", "table_grad", "coords_grad", "jvp"), outputs["triton", dtype],
                    outputs["torch", dtype], strict=True)  # fmt: skip
        result["agreement"][dtype] = {part: relative_error(got, want) for part, got, want in parts}
    print("max relative difference, triton vs torch:", json.dumps(result["agreement"]))
    fp32 = result["phases_ms"]
    result["samples_per_s_train"] = {k: args.points / (v["train"] / 1e3) for k, v in fp32.items()}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
