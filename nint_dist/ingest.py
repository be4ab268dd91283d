"""Turn a signal file into a zarr v3 signal store: ``python -m nint_dist.ingest INPUT OUTPUT.zarr``.

Images (PNG/JPEG) become ``(H, W, C)`` arrays in their stored dtype (uint8, or uint16 for
16-bit PNGs), with the value range and the coordinate domain ([-1, 1] on both axes) in the
attributes. The store is written under a temporary name and renamed when complete, so a
failed ingestion never leaves something that looks like a signal.
"""

import argparse
import os
import shutil
import sys
import uuid
from pathlib import Path

import numpy as np

from nint_dist.errors import UserError, run_cli
from nint_dist.signal import ATTRS_KEY, SignalSpec

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
TARGET_CHUNK_BYTES = 1 << 20


def read_image(path: Path) -> np.ndarray:
    """Decode an image to (H, W, C) in its stored dtype; UserError if it is not a readable image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("P", "CMYK", "YCbCr", "HSV", "LAB"):
                img = img.convert("RGBA" if "transparency" in img.info else "RGB")
            elif img.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(img).astype(np.uint16)
                return arr[..., None]
            elif img.mode == "1":
                img = img.convert("L")
            arr = np.asarray(img)
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise UserError(
            f"{path} is not a readable image ({str(e).splitlines()[0] or type(e).__name__})"
        ) from None
    if arr.ndim == 2:
        arr = arr[..., None]
    return arr


def default_chunk_rows(shape: tuple[int, ...], itemsize: int) -> int:
    """Rows per chunk: about 1 MiB per chunk, and at least 16 chunk rows when the signal is tall
    enough, so that it can be sharded over up to 16 workers."""
    row_bytes = int(np.prod(shape[1:])) * itemsize
    by_bytes = max(1, TARGET_CHUNK_BYTES // max(row_bytes, 1))
    by_workers = max(1, shape[0] // 16)
    return int(min(by_bytes, by_workers))


def write_signal(array: np.ndarray, spec: SignalSpec, output: Path) -> None:
    """Write ``array`` and its attributes to ``output`` atomically (temporary name, then rename)."""
    import zarr

    if output.exists():
        raise UserError(f"output {output} already exists; remove it or choose another path")
    parent = output.parent if str(output.parent) else Path(".")
    if not parent.is_dir():
        raise UserError(f"cannot write {output}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise UserError(f"cannot write {output}: directory {parent} is not writable")
    tmp = parent / f".{output.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        z = zarr.create_array(
            store=str(tmp),
            shape=array.shape,
            chunks=(spec.chunk_rows, *array.shape[1:]),
            dtype=array.dtype,
            zarr_format=3,
            attributes={ATTRS_KEY: spec.to_attrs()},
        )
        z[...] = array
        os.replace(tmp, output)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def image_signal(source: Path, chunk_rows: int | None = None) -> tuple[np.ndarray, SignalSpec]:
    """Decode an image and describe it as a signal (nothing is written)."""
    array = read_image(source)
    if not np.issubdtype(array.dtype, np.integer):
        raise UserError(f"{source}: unsupported pixel type {array.dtype}")
    spec = SignalSpec(
        grid=tuple(array.shape[:2]),
        channels=array.shape[2],
        value_range=(0.0, float(np.iinfo(array.dtype).max)),
        domain=((-1.0, 1.0), (-1.0, 1.0)),
        chunk_rows=chunk_rows or default_chunk_rows(array.shape, array.dtype.itemsize),
        kind="image",
    )
    return array, spec


def ingest(source: str | Path, output: str | Path, chunk_rows: int | None = None) -> SignalSpec:
    """Ingest any supported file into a signal store; UserError on bad input."""
    array, spec = load_source(Path(source), chunk_rows)
    write_signal(array, spec, Path(output))
    return spec


def load_source(source: Path, chunk_rows: int | None = None) -> tuple[np.ndarray, SignalSpec]:
    """Read a supported input file into memory with its signal description."""
    if not source.exists():
        raise UserError(f"input file not found: {source}")
    if not source.is_file() or not os.access(source, os.R_OK):
        raise UserError(f"input {source} is not a readable file")
    if source.suffix.lower() in IMAGE_SUFFIXES:
        return image_signal(source, chunk_rows)
    raise UserError(f"cannot ingest {source}: unsupported file type {source.suffix or '(none)'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nint_dist.ingest", description=__doc__.splitlines()[0])
    parser.add_argument("input", help="image file (PNG/JPEG)")
    parser.add_argument("output", help="output .zarr path (must not exist)")
    parser.add_argument(
        "--chunk-rows", type=int, default=None, help="rows per chunk (default: ~1 MiB chunks)"
    )
    args = parser.parse_args(argv)

    def body() -> int:
        spec = ingest(args.input, args.output, args.chunk_rows)
        print(
            f"wrote {args.output}: grid {spec.grid}, {spec.channels} channels, chunk rows {spec.chunk_rows}"
        )
        return 0

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
