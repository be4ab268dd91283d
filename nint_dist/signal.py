"""A signal stored as a zarr v3 array ``(*grid, C)``: its description, index ↔ coordinate maps
and chunk-aligned shards. Coordinates are never stored; they are computed from flat indices.

Flat index i enumerates the grid in row-major order, so a block of whole rows of the first
axis is a contiguous range of flat indices: shards are such blocks, aligned to chunk rows.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from nint_dist.errors import UserError

ATTRS_KEY = "nint_dist"
STANDARD_ATTRS = ("kind", "grid", "channels", "value_range", "domain")


@dataclass(frozen=True)
class SignalSpec:
    """What training needs to know about a stored signal."""

    grid: tuple[int, ...]
    """Grid shape without the channel axis: (H, W) for images, (T,) for audio, (D, H, W) volumes."""
    channels: int
    value_range: tuple[float, float] | None
    """Stored values map linearly from this range onto [0, 1] (None only before ingestion has
    measured it)."""
    domain: tuple[tuple[float, float], ...]
    """Coordinate interval per grid axis; grid points are spaced evenly, ends included."""
    chunk_rows: int
    """Chunk length along the first grid axis: shard boundaries fall on multiples of it."""
    kind: str = "image"
    """image, audio or volume: decides the exports and final metrics."""
    extra: dict = field(default_factory=dict, compare=False)
    """Further attributes kept with the store (e.g. an audio sample rate, a mesh's scaling)."""

    @property
    def num_points(self) -> int:
        return int(np.prod(self.grid))

    @property
    def points_per_row(self) -> int:
        return int(np.prod(self.grid[1:])) if len(self.grid) > 1 else 1

    def to_attrs(self) -> dict:
        return {
            **self.extra,
            "kind": self.kind,
            "grid": list(self.grid),
            "channels": self.channels,
            "value_range": list(self.value_range),
            "domain": [list(d) for d in self.domain],
        }

    @classmethod
    def from_array(cls, array) -> "SignalSpec":
        attrs = dict(array.attrs).get(ATTRS_KEY)
        if attrs is None:
            raise ValueError("zarr array has no nint_dist attributes; create it with nint_dist.ingest")
        grid = tuple(int(s) for s in array.shape[:-1])
        if tuple(attrs["grid"]) != grid or int(attrs["channels"]) != array.shape[-1]:
            raise ValueError(f"zarr array shape {array.shape} does not match its attributes")
        return cls(
            grid=grid,
            channels=int(array.shape[-1]),
            value_range=tuple(float(v) for v in attrs["value_range"]),
            domain=tuple(tuple(float(v) for v in d) for d in attrs["domain"]),
            chunk_rows=int(array.chunks[0]),
            kind=str(attrs.get("kind", "image")),
            extra={k: v for k, v in attrs.items() if k not in STANDARD_ATTRS},
        )


def open_signal(path: str | Path):
    """Open a signal store read-only. Returns (zarr array, SignalSpec)."""
    import zarr

    array = zarr.open_array(str(path), mode="r")
    return array, SignalSpec.from_array(array)


def shard_rows(spec: SignalSpec, world_size: int, rank: int) -> tuple[int, int]:
    """[start, stop) rows of the first axis owned by ``rank``: whole chunks, near-equal counts."""
    rows = spec.grid[0]
    num_chunks = -(-rows // spec.chunk_rows)
    if num_chunks < world_size:
        raise UserError(
            f"the signal has {num_chunks} chunk rows ({rows} rows in chunks of {spec.chunk_rows}),"
            f" too few for {world_size} workers; use fewer workers or re-ingest with smaller chunks"
        )
    base, extra = divmod(num_chunks, world_size)
    first = rank * base + min(rank, extra)
    last = first + base + (1 if rank < extra else 0)
    return first * spec.chunk_rows, min(last * spec.chunk_rows, rows)


def shard_starts(spec: SignalSpec, world_size: int) -> list[int]:
    """First flat index of every worker's shard, plus N at the end: [W + 1]."""
    starts = [shard_rows(spec, world_size, r)[0] * spec.points_per_row for r in range(world_size)]
    return starts + [spec.num_points]


def flat_to_coords(flat: torch.Tensor, spec: SignalSpec, dtype: torch.dtype) -> torch.Tensor:
    """Coordinates [n, D] of flat indices [n] (on the indices' device)."""
    coords = []
    rest = flat
    for axis in reversed(range(len(spec.grid))):
        size = spec.grid[axis]
        grid_index = rest % size
        rest = rest // size
        lo, hi = spec.domain[axis]
        step = (hi - lo) / (size - 1) if size > 1 else 0.0
        start = lo if size > 1 else 0.5 * (lo + hi)
        coords.append(start + grid_index.to(dtype) * step)
    return torch.stack(coords[::-1], dim=-1)


def to_unit(values: torch.Tensor, spec: SignalSpec, dtype: torch.dtype) -> torch.Tensor:
    """Stored values → training targets in [0, 1]."""
    lo, hi = spec.value_range
    return (values.to(dtype) - lo) / (hi - lo)


def unit_values(values, spec: SignalSpec) -> np.ndarray:
    """Stored values (e.g. read from the store) → [0, 1] as float64 NumPy, not clipped:
    ``to_unit`` for arrays on the host."""
    lo, hi = spec.value_range
    return (np.asarray(values, dtype=np.float64) - lo) / (hi - lo)


def from_unit(values: np.ndarray, spec: SignalSpec, stored_dtype: np.dtype) -> np.ndarray:
    """Targets in [0, 1] → stored values (clipped and rounded for integer dtypes)."""
    lo, hi = spec.value_range
    out = np.clip(values, 0.0, 1.0) * (hi - lo) + lo
    if np.issubdtype(stored_dtype, np.integer):
        out = np.rint(out)
    return out.astype(stored_dtype)


def checksum_gap(array, spec: SignalSpec) -> str | None:
    """Why the store's chunk rows cannot be checked against checksums (None when they can)."""
    record = dict(getattr(array, "attrs", {})).get(ATTRS_KEY, {}).get("checksums")
    if record is None:
        return "it holds no checksums"
    if record.get("chunk_rows") != spec.chunk_rows:
        return (
            f"its checksums were recorded for chunks of {record.get('chunk_rows')} rows, and it is"
            f" stored in chunks of {spec.chunk_rows}"
        )
    return None


def verifiable_checksums(array, spec: SignalSpec, strict: bool, warn: bool = False) -> dict | None:
    """The store's checksum record when it can be used; else None, with one warning on stderr
    when ``warn`` (the driver says it once, the workers stay quiet), or a ``UserError`` when
    ``strict`` (``data.verify=strict``)."""
    import sys

    gap = checksum_gap(array, spec)
    if gap is None:
        return dict(array.attrs)[ATTRS_KEY]["checksums"]
    if strict:
        raise UserError(f"data.verify=strict: the signal store cannot be verified: {gap}")
    if warn:
        print(
            f"warning: the signal store is not verified ({gap}); data.verify=strict refuses such a store",
            file=sys.stderr,
        )
    return None
