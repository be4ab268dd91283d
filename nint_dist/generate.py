"""Synthetic signals of any size, written chunk by chunk:
``python -m nint_dist.generate OUTPUT.zarr --shape 32768x32768 --channels 3 --detail 0.25``.

The signal is a sum of ``terms`` random plane waves per channel, cos(2π f·x + φ), with
frequencies up to ``detail`` × the grid's Nyquist frequency and amplitudes falling as 1/|f|
(natural-image-like). Each block is computed from its global grid indices, so the result does
not depend on the block size (up to float rounding) and nothing larger than a block is ever
held. Plane waves separate over the grid axes: a block is a contraction of per-axis factors,
fast enough for gigapixel signals on a CPU.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

from nint_dist.errors import UserError, run_cli
from nint_dist.ingest import default_chunk_rows, write_signal
from nint_dist.signal import SignalSpec

KINDS = {1: "audio", 2: "image", 3: "volume"}


def wave_bank(grid: tuple[int, ...], channels: int, terms: int, detail: float, seed: int):
    """Frequencies [C, K, D] in cycles per grid step, phases [C, K] and amplitudes [C, K]."""
    if not 0.0 < detail <= 1.0:
        raise UserError(f"detail must be in (0, 1], not {detail}")
    rng = np.random.default_rng(seed)
    nyquist = 0.5
    # log-uniform radii from one cycle over the signal up to detail × Nyquist
    lowest = 1.0 / max(grid)
    radius = np.exp(rng.uniform(np.log(lowest), np.log(max(detail * nyquist, lowest)), (channels, terms)))
    direction = rng.normal(size=(channels, terms, len(grid)))
    direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
    freqs = radius[..., None] * direction
    phases = rng.uniform(0, 2 * np.pi, (channels, terms))
    amps = 1.0 / (radius * max(grid))
    amps /= amps.sum(axis=1, keepdims=True)  # each channel's sum of waves stays in [-1, 1]
    return freqs, phases, amps


def block_values(lo: int, hi: int, grid: tuple[int, ...], bank) -> np.ndarray:
    """The signal at rows lo..hi-1 of the first axis, [hi - lo, *grid[1:], C] float32 in [0, 1].

    Σ_k a_k cos(2π f_k·n + φ_k) = Re Σ_k a_k e^{iφ_k} Π_d e^{2πi f_kd n_d}: a contraction of
    per-axis factors over k."""
    freqs, phases, amps = bank
    channels = []
    for c in range(freqs.shape[0]):
        factors = []
        for d, size in enumerate(grid):
            n = np.arange(lo, hi) if d == 0 else np.arange(size)
            factors.append(np.exp(2j * np.pi * np.outer(n, freqs[c, :, d])).astype(np.complex64))
        factors[0] = factors[0] * (amps[c] * np.exp(1j * phases[c])).astype(np.complex64)
        letters = "abc"[: len(grid)]
        expr = ",".join(f"{x}k" for x in letters) + "->" + letters
        channels.append(np.einsum(expr, *factors, optimize=True).real)
    return 0.5 + 0.5 * np.stack(channels, axis=-1)


def synthetic_signal(
    shape: tuple[int, ...],
    channels: int = 3,
    detail: float = 0.25,
    terms: int = 32,
    seed: int = 0,
    dtype: str | None = None,
    chunk_rows: int | None = None,
):
    """(dask array in the stored dtype, SignalSpec) of a synthetic signal; nothing is computed."""
    import dask.array as da

    if len(shape) not in KINDS or min(shape) < 2:
        raise UserError(f"shape must have 1 to 3 axes of at least 2 points, not {shape}")
    kind = KINDS[len(shape)]
    stored = np.dtype(dtype or ("uint8" if kind == "image" else "float16"))
    if stored not in (np.dtype("uint8"), np.dtype("float16"), np.dtype("float32")):
        raise UserError(f"dtype must be uint8, float16 or float32, not {stored}")
    full = (*shape, channels)
    rows = chunk_rows or default_chunk_rows(full, stored.itemsize)
    bank = wave_bank(shape, channels, terms, detail, seed)
    scale = 255.0 if stored == np.uint8 else 1.0

    def make(block_info=None):
        lo, hi = block_info[None]["array-location"][0]
        values = block_values(lo, hi, shape, bank) * scale
        return (np.rint(values) if stored == np.uint8 else values).astype(stored)

    row_chunks = tuple(min(rows, shape[0] - lo) for lo in range(0, shape[0], rows))
    data = da.map_blocks(
        make,
        chunks=(row_chunks, *((s,) for s in full[1:])),
        dtype=stored,
        meta=np.empty((0,) * len(full), stored),
    )
    value_range = (0.0, 255.0) if stored == np.uint8 else (0.0, 1.0)
    spec = SignalSpec(
        tuple(shape),
        channels,
        value_range,
        ((-1.0, 1.0),) * len(shape),
        rows,
        kind,
        extra={"source": "synthetic", "synthetic": {"detail": detail, "terms": terms, "seed": seed}},
    )
    return data, spec


def generate(output: str | Path, shape: tuple[int, ...], progress: bool = True, **kwargs) -> SignalSpec:
    """Write a synthetic signal store (see ``synthetic_signal`` for the options)."""
    data, spec = synthetic_signal(tuple(shape), **kwargs)
    return write_signal(data, spec, Path(output), progress=progress)


def parse_shape(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(s) for s in text.lower().split("x"))
    except ValueError:
        raise UserError(f"shape must look like 4096x4096 or 256x256x256, not {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nint_dist.generate", description=__doc__.splitlines()[0])
    parser.add_argument("output", help="output .zarr path (must not exist)")
    parser.add_argument("--shape", required=True, help="grid, e.g. 32768x32768 (image) or 512x512x512")
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--detail", type=float, default=0.25, help="highest frequency / Nyquist, (0, 1]")
    parser.add_argument("--terms", type=int, default=32, help="plane waves per channel")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", default=None, help="uint8 (images' default), float16 or float32")
    parser.add_argument("--chunk-rows", type=int, default=None)
    args = parser.parse_args(argv)

    def body() -> int:
        spec = generate(
            args.output,
            parse_shape(args.shape),
            channels=args.channels,
            detail=args.detail,
            terms=args.terms,
            seed=args.seed,
            dtype=args.dtype,
            chunk_rows=args.chunk_rows,
        )
        print(f"wrote {args.output}: {spec.kind}, grid {spec.grid}, {spec.channels} channels")
        return 0

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
