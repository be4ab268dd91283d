"""What the Adam step over a hash grid's table costs on a CPU beside the rest of a training step,
and whether updating only the rows the batch touched would pay.

One thread, CPU time of the thread (``time.thread_time``), best of ``--repeats``. For each batch
size: the forward and backward pass of the PyTorch grid (MSE against random targets), then one
Adam step over the table alone in each of PyTorch's implementations (single-tensor, foreach,
fused), and a touched-rows ("lazy", SparseAdam-like) update: find the rows with a non-zero
gradient, update their moments and entries only. Also reported: the share of rows the batch
touched, and the fused Adam step over the tables as they were before the levels were packed
(a full 2^log2_size-row table per level, where a level whose dense grid is smaller reaches only
(resolution + 1)^D of its rows).

    python benchmarks/hash_adam.py --batches 16384 65536 --out benchmarks/results/hash_adam_cpu.json
"""

import argparse
import json
import platform
import time
from collections.abc import Callable

import torch

from nint_dist.models.hashgrid import HashGrid


def cpu_seconds(fn: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.thread_time()
        fn()
        best = min(best, time.thread_time() - start)
    return best


def touched_rows_adam(table: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor, step: int,
                      lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.99), eps: float = 1e-15) -> int:
    """Adam on the rows of ``table`` whose gradient is non-zero (moments of the other rows are
    left as they are, as SparseAdam does). Returns the number of rows updated."""  # fmt: skip
    features = table.shape[-1]
    grad = table.grad.view(-1, features)
    rows = grad.ne(0).any(-1).nonzero().squeeze(1)
    g = grad[rows]
    m = exp_avg.view(-1, features)[rows].mul_(betas[0]).add_(g, alpha=1 - betas[0])
    v = exp_avg_sq.view(-1, features)[rows].mul_(betas[1]).addcmul_(g, g, value=1 - betas[1])
    exp_avg.view(-1, features)[rows] = m
    exp_avg_sq.view(-1, features)[rows] = v
    correction1, correction2 = 1 - betas[0] ** step, 1 - betas[1] ** step
    update = (m / correction1) / ((v / correction2).sqrt_().add_(eps))
    table.data.view(-1, features).index_add_(0, rows, update, alpha=-lr)
    return rows.numel()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", type=int, nargs="+", default=[16384, 65536])
    parser.add_argument("--levels", type=int, default=16)
    parser.add_argument("--log2-size", type=int, default=20)
    parser.add_argument("--features", type=int, default=2)
    parser.add_argument("--max-resolution", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    grid = HashGrid(2, 3, layers=3, width=64, levels=args.levels, log2_size=args.log2_size,
                    features=args.features, max_resolution=args.max_resolution)  # fmt: skip
    table = grid.tables
    full_tables = torch.zeros(args.levels * grid.size, args.features, requires_grad=True)
    rows = []
    for n in args.batches:
        coords, targets = torch.rand(n, 2) * 2 - 1, torch.rand(n, 3)

        def forward_backward(coords=coords, targets=targets):
            grid.zero_grad(set_to_none=True)
            (grid(coords) - targets).pow(2).mean().backward()

        row = {"batch": n, "forward_backward_s": cpu_seconds(forward_backward, args.repeats)}
        row["touched_row_share"] = table.grad.ne(0).any(-1).float().mean().item()
        for name, options in (("single", {"foreach": False}), ("foreach", {"foreach": True}),
                              ("fused", {"fused": True})):  # fmt: skip
            optimizer = torch.optim.Adam([table], lr=1e-3, **options)
            optimizer.step()  # the moments are allocated on the first step: not timed
            row[f"adam_{name}_s"] = cpu_seconds(optimizer.step, args.repeats)
        full_tables.grad = torch.zeros_like(full_tables)
        full_tables.grad[: table.shape[0]] = table.grad
        optimizer = torch.optim.Adam([full_tables], lr=1e-3, fused=True)
        optimizer.step()
        row["adam_fused_full_tables_s"] = cpu_seconds(optimizer.step, args.repeats)
        exp_avg, exp_avg_sq = torch.zeros_like(table), torch.zeros_like(table)
        lazy = lambda m=exp_avg, v=exp_avg_sq: touched_rows_adam(table, m, v, 2)  # noqa: E731
        row["adam_touched_rows_s"] = cpu_seconds(lazy, args.repeats)
        row["find_touched_rows_s"] = cpu_seconds(lambda: table.grad.ne(0).any(-1).nonzero(), args.repeats)
        rows.append(row)
        print(json.dumps(row), flush=True)
    result = {
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread",
        "table_rows": table.shape[0],
        "full_tables_rows": args.levels * grid.size,
        "features": args.features,
        "resolutions": grid.resolutions,
        "rows": rows,
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"rows: {table.shape[0]} packed, {args.levels * grid.size} in a full table per level")


if __name__ == "__main__":
    main()
