"""NumPy ``.npy`` files (memory-mapped) and existing zarr arrays, read lazily with dask.

The grid is read off the shape: (T,) audio, (H, W) or (H, W, C≤4) image, (D, H, W) or
(D, H, W, C) volume. ``kind`` settles the one ambiguous case, a 3-D array with a short last axis.
"""

from pathlib import Path

import numpy as np

from nint_dist.errors import UserError
from nint_dist.sources import Source, block_rows, integer_range

KINDS = ("image", "audio", "volume")


def read_npy(path: Path, kind: str | None) -> Source:
    import dask.array as da

    try:
        raw = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise UserError(f"{path} is not a readable .npy array ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, np.ndarray) or raw.dtype.fields is not None or raw.dtype == object:
        raise UserError(f"{path}: expected a plain numeric array, found dtype {raw.dtype}")
    row_bytes = raw[0].nbytes if raw.ndim and raw.shape[0] else 1
    data = da.from_array(raw, chunks=(block_rows(row_bytes), *raw.shape[1:]))
    return as_signal(path, data, kind)


def read_zarr(path: Path, kind: str | None) -> Source:
    import dask.array as da
    import zarr

    try:
        array = zarr.open_array(str(path), mode="r")
    except Exception as e:  # zarr raises several types for a directory that is not an array
        raise UserError(f"{path} is not a readable zarr array ({str(e).splitlines()[0]})") from None
    return as_signal(path, da.from_zarr(array), kind)


def as_signal(path: Path, data, kind: str | None) -> Source:
    """Lay a plain array out as (*grid, C) with the domain [-1, 1] on every grid axis."""
    if kind is not None and kind not in KINDS:
        raise UserError(f"kind must be one of {KINDS}, not {kind!r}")
    if not (np.issubdtype(data.dtype, np.number) or data.dtype == np.bool_) or np.issubdtype(
        data.dtype, np.complexfloating
    ):
        raise UserError(f"{path}: unsupported element type {data.dtype}")
    shape = data.shape
    if kind is None:
        kind = {1: "audio", 2: "image", 4: "volume"}.get(len(shape))
        if len(shape) == 3:
            kind = "image" if shape[-1] <= 4 else "volume"
    grid_dims = {"audio": 1, "image": 2, "volume": 3}.get(kind or "", -1)
    if len(shape) == grid_dims:
        data = data[..., None]
    elif len(shape) != grid_dims + 1:
        raise UserError(f"{path}: an array of shape {shape} is not a supported {kind or 'signal'}")
    if 0 in data.shape:
        raise UserError(f"{path}: the array is empty (shape {shape})")
    if data.dtype == np.bool_:
        data = data.astype(np.uint8)
    return Source(data, kind, ((-1.0, 1.0),) * grid_dims, integer_range(data.dtype))
