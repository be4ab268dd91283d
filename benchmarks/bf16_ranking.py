"""What bfloat16 autocast buys a pool ranking on this CPU, and what it changes in the ranking.

For the models and pool sizes of ``benchmarks/large_cpu.py`` (audio: SIREN 5×256, first-layer
frequency 3000, 17 640 one-dimensional coordinates; volume: SIREN 4×128, 52 429
three-dimensional ones; image: the hash grid, 26 214 pixels), one thread: CPU milliseconds of
the residual pass and of the NTK scores (vjp + jvp) in full precision and in ``bf16``, and the
share of the full-precision top 30% that the bfloat16 ranking keeps. The targets are fixed
synthetic signals (a chirp, a sphere's signed distance, smooth colours): the ranking is of the
initial residuals, as at a fit's first steps.

    python benchmarks/bf16_ranking.py --out results.json
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from nint_dist import scoring
from nint_dist.bench import machine
from nint_dist.errors import run_cli
from nint_dist.models.hashgrid import HashGrid
from nint_dist.models.siren import Siren

REPEATS = 5
TOP_SHARE = 0.3


def cpu_ms(fn) -> float:
    """Median CPU milliseconds of ``fn`` over REPEATS calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(REPEATS):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return sorted(times)[len(times) // 2] * 1e3


def case(name: str, model: torch.nn.Module, coords: torch.Tensor, targets: torch.Tensor) -> dict:
    n, pass_size = coords.shape[0], 4096

    def coords_of(lo: int, hi: int) -> torch.Tensor:
        return coords[lo:hi]

    def targets_of(lo: int, hi: int) -> torch.Tensor:
        return targets[lo:hi]

    def residual(precision: str) -> torch.Tensor:
        return scoring.residual_l1(model, coords_of, targets_of, n, pass_size, precision)

    def ntk(precision: str) -> torch.Tensor:
        v = scoring.residual_vjp(model, coords_of, targets_of, n, pass_size, precision)
        return scoring.ntk_scores(model, v, coords_of, n, pass_size, precision)

    top = int(TOP_SHARE * n)
    row: dict = {"case": name, "rows": n}
    for label, rank in (("residual", residual), ("ntk", ntk)):
        full, reduced = rank("full"), rank("bf16")
        kept = set(torch.topk(full, top).indices.tolist()) & set(torch.topk(reduced, top).indices.tolist())
        row[label] = {
            "full_ms": cpu_ms(lambda rank=rank: rank("full")),
            "bf16_ms": cpu_ms(lambda rank=rank: rank("bf16")),
            "top_kept": len(kept) / top,
        }
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    def body() -> int:
        torch.set_num_threads(1)
        torch.manual_seed(0)
        t = torch.linspace(-1, 1, 17_640).unsqueeze(1)
        chirp = 0.5 * torch.sin(200 * t + 800 * t**2)
        audio = case("audio", Siren(1, 1, layers=5, width=256, w0_initial=3000.0), t, chirp)
        points = torch.rand(52_429, 3) * 2 - 1
        sphere = points.norm(dim=1, keepdim=True) - 0.5
        volume = case("volume", Siren(3, 1, layers=4, width=128), points, sphere)
        pixels = torch.rand(26_214, 2) * 2 - 1
        colours = 0.5 + 0.5 * torch.sin(8 * pixels[:, :1] + 3 * pixels[:, 1:] + torch.arange(3))
        grid = HashGrid(2, 3, layers=3, width=64, levels=16, log2_size=19, features=2, max_resolution=2048)
        image = case("image, hash grid", grid, pixels, colours)
        rows = [audio, volume, image]
        results = {"machine": machine(), "bf16_in_hardware": scoring.native_bf16(), "rows": rows}
        args.out.write_text(json.dumps(results, indent=1))
        print(f"{results['machine']}; bfloat16 in hardware: {results['bf16_in_hardware']}")
        print("| case | ranking | full CPU ms | bf16 CPU ms | speed-up | top 30% kept |")
        print("|---|---|---|---|---|---|")
        for row in results["rows"]:
            for label in ("residual", "ntk"):
                r = row[label]
                speedup, kept = r["full_ms"] / r["bf16_ms"], 100 * r["top_kept"]
                print(
                    f"| {row['case']} ({row['rows']} rows) | {label} | {r['full_ms']:.0f} "
                    f"| {r['bf16_ms']:.0f} | {speedup:.1f}× | {kept:.1f}% |"
                )
        return 0

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
