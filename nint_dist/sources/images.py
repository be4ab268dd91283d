"""Pictures: PNG/JPEG through Pillow, TIFF and BigTIFF through tifffile.

PNG and JPEG have no random access, so Pillow decodes them whole (once); TIFF is read lazily:
memory-mapped when its samples are stored contiguously and uncompressed, else tile by tile (or
strip by strip) through tifffile's zarr view, so a BigTIFF larger than memory can be ingested.
"""

from pathlib import Path

import numpy as np

from nint_dist.errors import UserError
from nint_dist.sources import Source, integer_range

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
        da.from_array(array, chunks=(max(1, (1 << 24) // array[0].nbytes), -1, -1)),
        "image",
        IMAGE_DOMAIN,
        _pixel_range(array.dtype),
    )


def _pixel_range(dtype) -> tuple[float, float] | None:
    return (0.0, float(np.iinfo(dtype).max)) if np.issubdtype(dtype, np.unsignedinteger) else None


def read_tiff(path: Path) -> Source:
    """The first series of a TIFF as (H, W, C); (Z, H, W) stacks are volumes."""
    import dask.array as da
    import tifffile
    import zarr

    try:
        tif = tifffile.TiffFile(path)
    except Exception as e:  # tifffile reports damage with many exception types
        raise UserError(f"{path} is not a readable TIFF ({str(e).splitlines()[0]})") from None
    try:
        series = tif.series[0]
        _check_not_truncated(path, tif)
        shape, axes = tuple(series.shape), series.axes
        offset = series.dataoffset
        if offset is not None:  # contiguous and uncompressed: map it
            dtype = np.dtype(series.dtype).newbyteorder(tif.byteorder)
            raw = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
            data = da.from_array(raw, chunks=(max(1, (1 << 24) // max(raw[0].nbytes, 1)), *shape[1:]))
        else:
            data = da.from_zarr(zarr.open_array(series.aszarr(), mode="r"))
    except UserError:
        tif.close()
        raise
    except Exception as e:  # tifffile reports damage with many exception types
        tif.close()
        raise UserError(f"{path} is not a readable TIFF ({str(e).splitlines()[0]})") from None
    data, kind, domain = _arrange_axes(path, data, axes)
    value_range = _pixel_range(series.dtype) if kind == "image" else integer_range(series.dtype)
    return Source(data, kind, domain, value_range, close=tif.close)


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
