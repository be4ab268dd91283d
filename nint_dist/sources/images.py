"""Pictures: PNG/JPEG through Pillow, TIFF and BigTIFF through tifffile.

PNG and JPEG have no random access, so Pillow decodes them whole (once); TIFF is read lazily:
memory-mapped when its samples are stored contiguously and uncompressed, else tile by tile (or
strip by strip) through tifffile's zarr view, so a BigTIFF larger than memory can be ingested.
"""

from pathlib import Path

import numpy as np

from nint_dist.errors import UserError
from nint_dist.sources import Source, block_rows, integer_range

IMAGE_DOMAIN = ((-1.0, 1.0), (-1.0, 1.0))


def decode_picture(path: Path) -> np.ndarray:
    """Decode a PNG/JPEG to (H, W, C) in its stored dtype; UserError if it is not a readable image."""
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = None  # large photographs are the point; the decoder still checks the file
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("P", "CMYK", "YCbCr", "HSV", "LAB"):
                img = img.convert("RGBA" if "transparency" in img.info else "RGB")
            elif img.mode in ("I;16", "I;16B", "I;16L", "I"):
                return np.asarray(img).astype(np.uint16)[..., None]
            elif img.mode == "1":
                img = img.convert("L")
            arr = np.asarray(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise UserError(
            f"{path} is not a readable image ({str(e).splitlines()[0] or type(e).__name__})"
        ) from None
    return arr[..., None] if arr.ndim == 2 else arr


def read_picture(path: Path) -> Source:
    import dask.array as da

    array = decode_picture(path)
    if integer_range(array.dtype) is None:
        raise UserError(f"{path}: unsupported pixel type {array.dtype}")
    return Source(
        da.from_array(array, chunks=(block_rows(array[0].nbytes), -1, -1)),
        "image",
        IMAGE_DOMAIN,
        _pixel_range(array.dtype),
    )


def _pixel_range(dtype) -> tuple[float, float] | None:
    """Unsigned pixels: 0..max onto [0, 1]; other types: None (measured while writing)."""
    return integer_range(dtype) if np.issubdtype(dtype, np.unsignedinteger) else None


def read_tiff(path: Path) -> Source:
    """The first series of a TIFF as (H, W, C); (Z, H, W) stacks are volumes. The file is closed
    before this returns (also on an error): the samples are read later, memory-mapped or through
    ``TiffRegions``, which opens the file for each read."""
    import dask.array as da
    import tifffile

    try:
        tif = tifffile.TiffFile(path)
    except Exception as e:  # tifffile reports damage with many exception types
        raise UserError(f"{path} is not a readable TIFF ({str(e).splitlines()[0]})") from None
    with tif:
        try:
            series = tif.series[0]
            _check_not_truncated(path, tif)
            shape, axes, dtype = tuple(series.shape), series.axes, np.dtype(series.dtype)
            offset = series.dataoffset
            stored = dtype.newbyteorder(tif.byteorder)
            tile = None if offset is not None else _tile_shape(series)
        except UserError:
            raise
        except Exception as e:  # tifffile reports damage with many exception types
            raise UserError(f"{path} is not a readable TIFF ({str(e).splitlines()[0]})") from None
    if offset is not None:  # contiguous and uncompressed: map it
        raw = np.memmap(path, dtype=stored, mode="r", offset=offset, shape=shape)
        data = da.from_array(raw, chunks=(block_rows(raw[0].nbytes), *shape[1:]))
    else:  # compressed, tiled or in strips: whole rows of tiles per block
        row_axis = 1 if axes in ("SYX", "CYX") else 0
        data = da.from_array(
            TiffRegions(path, shape, dtype),
            chunks=_row_blocks(shape, dtype.itemsize, tile, row_axis),
            meta=np.empty((0,) * len(shape), dtype),
        )
    data, kind, domain = _arrange_axes(path, data, axes)
    value_range = _pixel_range(dtype) if kind == "image" else integer_range(dtype)
    return Source(data, kind, domain, value_range)


class TiffRegions:
    """The first series of a TIFF file as an array dask can read from: each read opens the file,
    decodes the region through tifffile's zarr view and closes the file again, so no handle
    stays open between reads, after ingestion or after an error, and reading threads do not
    share one."""

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: np.dtype):
        self.path, self.shape, self.dtype = Path(path), shape, np.dtype(dtype)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getitem__(self, key) -> np.ndarray:
        import tifffile
        import zarr

        with tifffile.TiffFile(self.path) as tif, tif.series[0].aszarr() as store:
            return np.asarray(zarr.open_array(store, mode="r")[key])


def _tile_shape(series) -> tuple[int, ...]:
    """The shape of the series' tiles or strips (what tifffile's zarr view reads as one piece)."""
    import zarr

    with series.aszarr() as store:
        return tuple(zarr.open_array(store, mode="r").chunks)


def _row_blocks(shape: tuple[int, ...], itemsize: int, tile: tuple[int, ...], axis: int) -> tuple[int, ...]:
    """Dask's blocks (its ``chunks``): about ``BLOCK_BYTES`` of whole tile rows along ``axis``,
    the axes after it whole, the ones before it (planar samples) a tile at a time."""
    row_bytes = itemsize * int(np.prod(shape)) // max(shape[axis], 1)
    rows = max(tile[axis], block_rows(row_bytes) // tile[axis] * tile[axis])
    return tuple(tile[a] if a < axis else rows if a == axis else shape[a] for a in range(len(shape)))


def _check_not_truncated(path: Path, tif) -> None:
    """A TIFF whose strips or tiles point past the end of the file is truncated."""
    size = path.stat().st_size
    for page in tif.pages:
        ends = [o + n for o, n in zip(page.dataoffsets, page.databytecounts, strict=False) if n]
        if ends and max(ends) > size:
            raise UserError(f"{path} is truncated: its image data ends past the end of the file")


def _arrange_axes(path: Path, data, axes: str):
    """tifffile axes → (H, W, C) for images, (Z, Y, X, 1) for stacks."""
    if axes in ("YX",):
        return data[..., None], "image", IMAGE_DOMAIN
    if axes in ("YXS", "YXC"):
        return data, "image", IMAGE_DOMAIN
    if axes in ("QYX", "ZYX", "IYX"):
        return data[..., None], "volume", ((-1.0, 1.0),) * 3
    if axes in ("SYX", "CYX") and data.shape[0] <= 4:
        return data.transpose(1, 2, 0), "image", IMAGE_DOMAIN
    raise UserError(f"{path}: TIFF axes {axes} are not supported (expected YX, YXS, SYX or ZYX)")
