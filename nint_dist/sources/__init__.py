"""Readers that present an input file as a lazy dask array ``(*grid, C)``.

Each reader returns a ``Source`` without reading the samples: images and arrays are memory-mapped
or opened tile by tile, meshes become a signed-distance volume computed block by block. Writing
(and checking) the values is ``nint_dist.ingest``'s job.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from nint_dist.errors import UserError


@dataclass
class Source:
    """A lazily read signal and what ingestion must record about it. It holds no open file, so
    there is nothing to close: a reader closes what it opened before it returns (also on an
    error), and the data reads through memory maps or by opening the file per read."""

    data: object
    """dask array (*grid, C)."""
    kind: str
    """image, audio or volume."""
    domain: tuple[tuple[float, float], ...]
    """Coordinate interval per grid axis."""
    value_range: tuple[float, float] | None
    """Stored values map from this range onto [0, 1]; None: measured while the data is written."""
    notes: list[str] = field(default_factory=list)
    """Things the user should know (e.g. how a mesh hole was handled); printed by the CLI."""
    attrs: dict = field(default_factory=dict)
    """Extra attributes to store (e.g. the mesh's normalisation)."""


BLOCK_BYTES = 1 << 24
"""About this many bytes of input per dask block: what one writer thread reads at a time."""


def block_rows(row_bytes: int) -> int:
    """Rows of the first axis per dask block, for rows of ``row_bytes`` each (at least one)."""
    return max(1, BLOCK_BYTES // max(row_bytes, 1))


def integer_range(dtype) -> tuple[float, float] | None:
    """The full range of an integer dtype (so stored values map onto [0, 1] as they are)."""
    import numpy as np

    if np.issubdtype(dtype, np.bool_):
        return (0.0, 1.0)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return (float(info.min), float(info.max))
    return None


def open_source(path: Path, kind: str | None = None, resolution: int = 128) -> Source:
    """Pick the reader by suffix (a directory is a zarr array). UserError on anything unreadable."""
    from nint_dist.sources import arrays, audio, images, mesh

    suffix = path.suffix.lower()
    if path.is_dir() or suffix == ".zarr":
        return arrays.read_zarr(path, kind)
    readers: dict[str, Callable[[], Source]] = {
        ".png": lambda: images.read_picture(path),
        ".jpg": lambda: images.read_picture(path),
        ".jpeg": lambda: images.read_picture(path),
        ".tif": lambda: images.read_tiff(path),
        ".tiff": lambda: images.read_tiff(path),
        ".npy": lambda: arrays.read_npy(path, kind),
        ".wav": lambda: audio.read_wav(path),
        ".obj": lambda: mesh.read_mesh(path, resolution),
    }
    if suffix not in readers:
        raise UserError(
            f"cannot ingest {path}: unsupported file type {path.suffix or '(none)'}"
            f" (supported: {', '.join(sorted(readers))}, .zarr)"
        )
    return readers[suffix]()
