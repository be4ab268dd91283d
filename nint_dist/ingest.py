"""Turn a signal file into a zarr v3 signal store: ``python -m nint_dist.ingest INPUT OUTPUT.zarr``.

Inputs: PNG/JPEG, TIFF/BigTIFF, NumPy ``.npy``, zarr arrays, WAV audio and OBJ meshes (as a
signed-distance volume). The input is read lazily with dask and written block by block, so it
never has to fit in memory. Each block is checked (NaN/inf), converted to the stored dtype,
check-summed per chunk and written; every write covers whole chunk files, since two writers
of one chunk file would race. The store is written under a temporary name and renamed when
complete, so a failed ingestion never leaves something that looks like a signal.

Layout: chunks are whole rows of the first grid axis (``chunk_rows`` of them), so a worker's
shard is a run of whole chunks. Stores above ``CHUNK_FILE_MIN_BYTES`` group consecutive chunks
into chunk files of about ``CHUNK_FILE_TARGET_BYTES`` (fewer, larger files): what zarr's
sharding codec calls a "shard", a word this package keeps for a worker's rows. Floats are
stored as float16 unless asked otherwise (targets tolerate it and it halves the memory).
"""

import argparse
import os
import shutil
import sys
import uuid
import zlib
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import replace
from pathlib import Path

import numpy as np

from nint_dist.errors import UserError, run_cli
from nint_dist.signal import ATTRS_KEY, SignalSpec, shard_rows
from nint_dist.sources import Source, open_source

TARGET_CHUNK_BYTES = 1 << 20
WRITE_BLOCK_BYTES = 1 << 24
CHUNK_FILE_MIN_BYTES = 1 << 28
"""Stores at least this large group their chunks into chunk files."""
CHUNK_FILE_TARGET_BYTES = 1 << 26
"""About this many bytes of chunks per chunk file."""
STORED_FLOATS = ("float16", "float32")


def default_chunk_rows(shape: tuple[int, ...], itemsize: int, workers: int = 16) -> int:
    """Rows per chunk: about 1 MiB per chunk, and at least max(16, workers) chunk rows when the
    signal is tall enough, so that it can be split over that many workers."""
    row_bytes = int(np.prod(shape[1:])) * itemsize
    by_bytes = max(1, TARGET_CHUNK_BYTES // max(row_bytes, 1))
    by_workers = max(1, shape[0] // max(16, workers))
    return int(min(by_bytes, by_workers))


def stored_dtype(dtype: np.dtype, float_dtype: str | None) -> np.dtype:
    """Integers keep their dtype; floats become float16 (default) or float32."""
    if np.issubdtype(dtype, np.integer):
        return np.dtype(dtype)
    if float_dtype is not None and float_dtype not in STORED_FLOATS:
        raise UserError(f"--dtype must be one of {STORED_FLOATS}, not {float_dtype!r}")
    return np.dtype(float_dtype or "float16")


def _layout(shape: tuple[int, ...], dtype: np.dtype, chunk_rows: int) -> tuple[int, int | None]:
    """(rows per write, rows per chunk file or None for one file per chunk): with chunk files,
    each write is one whole chunk file."""
    row_bytes = int(np.prod(shape[1:])) * dtype.itemsize
    chunk_bytes = max(chunk_rows * row_bytes, 1)
    if shape[0] * row_bytes >= CHUNK_FILE_MIN_BYTES and shape[0] > chunk_rows:
        per_file = max(1, CHUNK_FILE_TARGET_BYTES // chunk_bytes)
        rows = chunk_rows * per_file
        return rows, rows
    return chunk_rows * max(1, WRITE_BLOCK_BYTES // chunk_bytes), None


def _block_values(array, lo: int, hi: int) -> np.ndarray:
    part = array[lo:hi]
    if hasattr(part, "compute"):  # dask: compute here, in this writer thread
        part = part.compute(scheduler="synchronous")
    return np.asarray(part)


def write_signal(
    array, spec: SignalSpec, output: Path, extra_attrs: dict | None = None, progress: bool = True
) -> SignalSpec:
    """Write ``array`` (numpy or dask, already in the stored dtype) with its attributes to
    ``output`` atomically; returns the spec with the value range measured if it was None."""
    import zarr

    output = Path(output)
    if output.exists():
        raise UserError(f"output {output} already exists; remove it or choose another path")
    parent = output.parent if str(output.parent) else Path(".")
    if not parent.is_dir():
        raise UserError(f"cannot write {output}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise UserError(f"cannot write {output}: directory {parent} is not writable")
    dtype = np.dtype(array.dtype)
    shape = tuple(int(s) for s in array.shape)
    write_rows, file_rows = _layout(shape, dtype, spec.chunk_rows)
    tmp = parent / f".{output.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        z = zarr.create_array(
            store=str(tmp),
            shape=shape,
            chunks=(spec.chunk_rows, *shape[1:]),
            shards=None if file_rows is None else (file_rows, *shape[1:]),  # zarr's word for chunk files
            dtype=dtype,
            zarr_format=3,
        )
        stats = _write_blocks(array, z, write_rows, spec.chunk_rows, progress)
        spec = _with_range(spec, stats, dtype)
        attrs = {
            **spec.to_attrs(),
            "shape": list(shape),
            "dtype": dtype.name,
            "checksums": {
                "algorithm": "crc32",
                "chunk_rows": spec.chunk_rows,
                "values": [c for s in stats for c in s["crc"]],
            },
            **(extra_attrs or {}),
        }
        z.update_attributes({ATTRS_KEY: attrs})
        os.replace(tmp, output)
    except OSError as e:
        raise UserError(f"cannot write {output}: {e.strerror or e}") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return spec


def _write_blocks(array, z, write_rows: int, chunk_rows: int, progress: bool) -> list[dict]:
    """Write row blocks [lo, lo + write_rows) in a few threads; each returns its chunks' CRC32s,
    min and max. The first failure cancels the rest."""
    from tqdm import tqdm

    rows = z.shape[0]
    starts = list(range(0, rows, write_rows))
    row_bytes = int(np.prod(z.shape[1:])) * z.dtype.itemsize

    def one(lo: int) -> dict:
        hi = min(lo + write_rows, rows)
        block = np.ascontiguousarray(_block_values(array, lo, hi).astype(z.dtype, copy=False))
        if block.dtype.kind == "f" and not np.isfinite(block).all():
            raise UserError(
                f"the signal holds NaN or inf values (rows {lo}..{hi - 1}; in float16 also values"
                " beyond ±65504: use --dtype float32)"
            )
        z[lo:hi] = block
        crc = [zlib.crc32(block[c : c + chunk_rows]) for c in range(0, hi - lo, chunk_rows)]
        return {"lo": lo, "crc": crc, "min": float(block.min()), "max": float(block.max())}

    bar = tqdm(
        total=rows * row_bytes,
        unit="B",
        unit_scale=True,
        disable=None if progress else True,
        file=sys.stderr,
        desc="ingest",
    )
    results = {}
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        pending = {pool.submit(one, lo) for lo in starts}
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                if future.exception() is not None:
                    for other in pending:
                        other.cancel()
                    bar.close()
                    raise future.exception()
                result = future.result()
                results[result["lo"]] = result
                bar.update(min(write_rows, rows - result["lo"]) * row_bytes)
    bar.close()
    return [results[lo] for lo in starts]


def _with_range(spec: SignalSpec, stats: list[dict], dtype: np.dtype) -> SignalSpec:
    if spec.value_range is not None:
        return spec
    lo, hi = min(s["min"] for s in stats), max(s["max"] for s in stats)
    if hi <= lo:  # a constant signal: any non-empty range maps it somewhere in [0, 1]
        hi = lo + 1.0
    return replace(spec, value_range=(lo, hi))


def verify_signal(path: str | Path) -> list[int]:
    """Indices of the chunk rows whose stored bytes no longer match their recorded CRC32."""
    import zarr

    array = zarr.open_array(str(path), mode="r")
    record = dict(array.attrs)[ATTRS_KEY]["checksums"]
    step = record["chunk_rows"]
    return [
        i
        for i, expected in enumerate(record["values"])
        if zlib.crc32(np.ascontiguousarray(array[i * step : (i + 1) * step])) != expected
    ]


def image_signal(source: Path, chunk_rows: int | None = None) -> tuple[np.ndarray, SignalSpec]:
    """A PNG/JPEG decoded into memory and described as a signal (nothing is written): what
    ``load_source`` reads from a picture, as a NumPy array."""
    data, spec = load_source(Path(source), chunk_rows, kind="image")
    return np.asarray(data), spec


def load_source(
    source: Path,
    chunk_rows: int | None = None,
    *,
    kind: str | None = None,
    resolution: int = 128,
    dtype: str | None = None,
    workers: int = 1,
) -> tuple[object, SignalSpec]:
    """Open a supported input lazily: (dask array in the stored dtype, spec). The value range
    of float inputs is None until ``write_signal`` has measured it. Notes on what was done to
    the input (e.g. a mesh's holes closed) go to stderr. No file is left open (see ``Source``),
    so the caller may keep the array until it writes it, or drop it unwritten."""
    source = Path(source)
    if not source.exists():
        raise UserError(f"input file not found: {source}")
    if not source.is_dir() and (not source.is_file() or not os.access(source, os.R_OK)):
        raise UserError(f"input {source} is not a readable file")
    src: Source = open_source(source, kind, resolution)
    for note in src.notes:
        print(f"warning: {note}", file=sys.stderr)
    data = src.data
    target = stored_dtype(np.dtype(data.dtype), dtype)
    if target != data.dtype:
        data = data.astype(target)
    grid = tuple(int(s) for s in data.shape[:-1])
    if grid[0] < workers:
        raise UserError(
            f"cannot split {grid[0]} rows of {source.name} into {workers} workers: at most {grid[0]}"
        )
    rows = chunk_rows or default_chunk_rows(data.shape, target.itemsize, workers)
    if rows < 1:
        raise UserError(f"--chunk-rows must be positive, not {rows}")
    spec = SignalSpec(grid, int(data.shape[-1]), src.value_range, src.domain, rows, src.kind)
    try:
        shard_rows(spec, workers, 0)
    except ValueError as e:
        raise UserError(str(e)) from None
    return data, replace(spec, extra={"source": source.name, **src.attrs})


def ingest(
    source: str | Path,
    output: str | Path,
    chunk_rows: int | None = None,
    *,
    kind: str | None = None,
    resolution: int = 128,
    dtype: str | None = None,
    workers: int = 1,
    progress: bool = True,
) -> SignalSpec:
    """Ingest any supported file into a signal store; UserError on bad input."""
    data, spec = load_source(
        Path(source), chunk_rows, kind=kind, resolution=resolution, dtype=dtype, workers=workers
    )
    return write_signal(data, spec, Path(output), progress=progress)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nint_dist.ingest", description=__doc__.splitlines()[0])
    parser.add_argument("input", help="PNG/JPEG, TIFF, .npy, .zarr, WAV or OBJ mesh")
    parser.add_argument("output", help="output .zarr path (must not exist)")
    parser.add_argument(
        "--chunk-rows", type=int, default=None, help="rows per chunk (default: ~1 MiB chunks)"
    )
    parser.add_argument(
        "--kind", choices=("image", "audio", "volume"), help="for ambiguous .npy/.zarr shapes"
    )
    parser.add_argument("--resolution", type=int, default=128, help="mesh: grid points per axis")
    parser.add_argument("--dtype", choices=STORED_FLOATS, default=None, help="stored dtype of float inputs")
    parser.add_argument("--workers", type=int, default=1, help="check that the signal splits over this many")
    args = parser.parse_args(argv)

    def body() -> int:
        spec = ingest(
            args.input,
            args.output,
            args.chunk_rows,
            kind=args.kind,
            resolution=args.resolution,
            dtype=args.dtype,
            workers=args.workers,
        )
        print(
            f"wrote {args.output}: {spec.kind}, grid {spec.grid}, {spec.channels} channels,"
            f" chunk rows {spec.chunk_rows}, value range {spec.value_range}"
        )
        return 0

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
