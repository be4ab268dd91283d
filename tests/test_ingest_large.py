"""Out-of-core ingestion: every format against an independent reader, per-chunk checksums,
stores grouped into chunk files, the generator, bad input refused without a finished-looking
output, and a worker reading only its own chunks."""

import zlib

import numpy as np
import pytest
import tifffile
import torch
import zarr

from nint_dist import generate as gen
from nint_dist import ingest as ing
from nint_dist.errors import UserError
from nint_dist.shard import load_shard
from nint_dist.signal import open_signal, shard_rows


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_npy_float_is_stored_as_float16_with_range_and_chunk_checksums(tmp_path):
    values = np.random.default_rng(0).normal(size=(50, 7)).astype(np.float32)
    np.save(tmp_path / "x.npy", values)
    spec = ing.ingest(tmp_path / "x.npy", tmp_path / "x.zarr", chunk_rows=8, kind="image")
    array, stored = open_signal(tmp_path / "x.zarr")
    expected = values.astype(np.float16)[..., None]
    assert array.dtype == np.float16 and np.array_equal(array[...], expected)
    assert stored.value_range == spec.value_range == (float(expected.min()), float(expected.max()))
    attrs = dict(array.attrs)["nint_dist"]
    assert attrs["shape"] == [50, 7, 1] and attrs["dtype"] == "float16" and attrs["source"] == "x.npy"
    crcs = [zlib.crc32(np.ascontiguousarray(expected[i : i + 8]).tobytes()) for i in range(0, 50, 8)]
    assert attrs["checksums"]["values"] == crcs
    assert ing.verify_signal(tmp_path / "x.zarr") == []
    zarr.open_array(str(tmp_path / "x.zarr"), mode="r+")[17, 3, 0] = 99
    assert ing.verify_signal(tmp_path / "x.zarr") == [2]


def test_large_stores_are_written_in_whole_chunk_files(tmp_path, monkeypatch):
    monkeypatch.setattr(ing, "CHUNK_FILE_MIN_BYTES", 4096)
    monkeypatch.setattr(ing, "CHUNK_FILE_TARGET_BYTES", 3 * 10 * 16 * 3)
    writes = []
    original = zarr.Array.__setitem__

    def record(self, key, value):
        writes.append((key.start, key.stop))
        return original(self, key, value)

    monkeypatch.setattr(zarr.Array, "__setitem__", record)
    pixels = np.random.default_rng(1).integers(0, 256, (95, 16, 3), dtype=np.uint8)
    np.save(tmp_path / "p.npy", pixels)
    ing.ingest(tmp_path / "p.npy", tmp_path / "p.zarr", chunk_rows=10, progress=False)
    array = zarr.open_array(str(tmp_path / "p.zarr"), mode="r")
    assert array.chunks[0] == 10 and array.shards[0] == 30  # zarr's "shards": chunk files of 3 chunks
    assert np.array_equal(array[...], pixels)
    assert sorted(writes) == [(0, 30), (30, 60), (60, 90), (90, 95)]


def test_tiff_and_bigtiff_match_tifffile(tmp_path):
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 65535, (70, 45, 3), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "tiled.tif", rgb, bigtiff=True, tile=(32, 32), compression="zlib")
    tifffile.imwrite(tmp_path / "plain.tif", rgb[..., 0])
    planes = np.moveaxis(rgb, -1, 0)  # channels first, compressed in strips of 8 rows
    strips = {"planarconfig": "separate", "compression": "zlib", "rowsperstrip": 8}
    tifffile.imwrite(tmp_path / "planar.tif", planes, **strips)
    for name in ("tiled", "plain", "planar"):
        ing.ingest(tmp_path / f"{name}.tif", tmp_path / f"{name}.zarr", chunk_rows=16)
        array, spec = open_signal(tmp_path / f"{name}.zarr")
        reference = tifffile.imread(tmp_path / f"{name}.tif")
        reference = np.moveaxis(reference, 0, -1) if name == "planar" else reference
        assert np.array_equal(array[...], reference.reshape(array.shape))
        assert spec.value_range == (0.0, 65535.0) and spec.kind == "image"


def test_tiff_files_are_closed_once_read_written_or_refused(tmp_path, monkeypatch):
    """No TiffFile stays open after the reader returns (launch holds the lazy array until it
    writes the store), after writing, or after a TIFF is refused."""
    opened = []

    class Recording(tifffile.TiffFile):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            opened.append(self)

    rgb = np.random.default_rng(4).integers(0, 255, (40, 30, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "tiled.tif", rgb, tile=(16, 16), compression="zlib")
    tifffile.imwrite(tmp_path / "plain.tif", rgb[..., 0])
    tifffile.imwrite(tmp_path / "hyper.tif", np.zeros((2, 3, 8, 8), np.uint8), photometric="minisblack")
    monkeypatch.setattr(tifffile, "TiffFile", Recording)
    for name in ("tiled", "plain"):
        data, spec = ing.load_source(tmp_path / f"{name}.tif", 8)
        assert opened and all(t.filehandle.closed for t in opened), name
        ing.write_signal(data, spec, tmp_path / f"{name}.zarr", progress=False)
        assert all(t.filehandle.closed for t in opened), name
        stored, _ = open_signal(tmp_path / f"{name}.zarr")
        assert np.array_equal(stored[...], rgb if name == "tiled" else rgb[..., :1])
    count = len(opened)
    with pytest.raises(UserError, match="not supported"):
        ing.ingest(tmp_path / "hyper.tif", tmp_path / "hyper.zarr")
    assert len(opened) > count and all(t.filehandle.closed for t in opened)


def test_zarr_input_becomes_a_volume(tmp_path):
    cube = np.random.default_rng(3).integers(0, 200, (20, 9, 11), dtype=np.uint8)
    zarr.create_array(store=str(tmp_path / "in.zarr"), shape=cube.shape, chunks=(7, 9, 11), dtype="u1")[
        ...
    ] = cube
    ing.ingest(tmp_path / "in.zarr", tmp_path / "out.zarr", chunk_rows=4)
    array, spec = open_signal(tmp_path / "out.zarr")
    assert spec.kind == "volume" and spec.grid == (20, 9, 11) and len(spec.domain) == 3
    assert np.array_equal(array[..., 0], cube)


def bad_inputs(tmp_path):
    tifffile.imwrite(tmp_path / "full.tif", np.zeros((64, 64), np.uint8))
    (tmp_path / "cut.tif").write_bytes((tmp_path / "full.tif").read_bytes()[:2000])
    np.save(tmp_path / "full.npy", np.zeros((64, 64), np.float32))
    (tmp_path / "cut.npy").write_bytes((tmp_path / "full.npy").read_bytes()[:3000])
    nan = np.zeros((64, 64), np.float32)
    nan[50, 3] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    inf = np.zeros((64, 64), np.float64)
    inf[2, 2] = np.inf
    np.save(tmp_path / "inf.npy", inf)
    (tmp_path / "afile").write_text("x")
    return {
        "truncated TIFF": ["cut.tif", "a.zarr"],
        "truncated npy": ["cut.npy", "b.zarr"],
        "NaN": ["nan.npy", "c.zarr"],
        "inf": ["inf.npy", "d.zarr"],
        "too many workers": ["full.npy", "e.zarr", "--workers", "65"],
        "unsplittable chunks": ["full.npy", "f.zarr", "--workers", "5", "--chunk-rows", "16"],
        "unwritable output": ["full.npy", "afile/g.zarr"],
        "float16 overflow": ["big.npy", "h.zarr"],
    }


def test_bad_input_is_one_line_and_leaves_nothing(tmp_path, capsys):
    np.save(tmp_path / "big.npy", np.full((8, 8), 1e6, np.float32))
    cases = bad_inputs(tmp_path)
    for name, args in cases.items():
        argv = [str(tmp_path / args[0]), str(tmp_path / args[1]), *args[2:]]
        assert ing.main(argv) == 2, name
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: "), (name, err)
        assert not (tmp_path / args[1]).exists(), name
    assert leftovers(tmp_path) == []
    assert ing.main([str(tmp_path / "big.npy"), str(tmp_path / "h.zarr"), "--dtype", "float32"]) == 0


def test_generator_blocks_do_not_depend_on_chunking_and_match_the_formula(tmp_path):
    a, spec = gen.synthetic_signal(
        (40, 24), channels=2, detail=0.5, terms=5, seed=7, dtype="float32", chunk_rows=3
    )
    b, _ = gen.synthetic_signal(
        (40, 24), channels=2, detail=0.5, terms=5, seed=7, dtype="float32", chunk_rows=16
    )
    assert np.allclose(a.compute(), b.compute(), atol=1e-6)  # the same up to float32 rounding
    freqs, phases, amps = gen.wave_bank((40, 24), 2, 5, 0.5, 7)
    n = np.stack(np.meshgrid(np.arange(40), np.arange(24), indexing="ij"), -1)
    direct = 0.5 + 0.5 * np.stack(
        [(amps[c] * np.cos(2 * np.pi * n @ freqs[c].T + phases[c])).sum(-1) for c in range(2)], -1
    )
    assert np.allclose(a.compute(), direct, atol=1e-5)
    assert np.abs(freqs).max() <= 0.5 * 0.5 + 1e-12
    gen.generate(tmp_path / "v.zarr", (12, 10, 8), channels=1, terms=4, progress=False)
    array, vspec = open_signal(tmp_path / "v.zarr")
    assert vspec.kind == "volume" and array.dtype == np.float16 and array.shape == (12, 10, 8, 1)


class CountingArray:
    """A zarr array that records the rows asked of it (to see what a worker reads)."""

    def __init__(self, array):
        self.array, self.dtype, self.rows = array, array.dtype, []

    def __getitem__(self, key):
        self.rows.append((key.start, key.stop))
        return self.array[key]


def test_a_worker_reads_only_its_chunks_and_keeps_the_stored_dtype(tmp_path):
    gen.generate(tmp_path / "s.zarr", (64, 16), channels=3, terms=4, chunk_rows=4, progress=False)
    array, spec = open_signal(tmp_path / "s.zarr")
    for rank in range(3):
        counting = CountingArray(array)
        shard = load_shard(counting, spec, 3, rank, torch.device("cpu"), torch.float32)
        lo, hi = shard_rows(spec, 3, rank)
        assert counting.rows[0][0] == lo and counting.rows[-1][1] == hi
        assert all(b - a <= 4 and a % 4 == 0 for a, b in counting.rows)
        assert shard.values.dtype == torch.uint8
        assert np.array_equal(shard.values.numpy(), array[lo:hi].reshape(-1, 3))


@pytest.mark.parametrize("rows,workers", [(16, 16), (40, 20)])
def test_default_chunks_split_over_the_requested_workers(rows, workers):
    chunk = ing.default_chunk_rows((rows, 8, 3), 1, workers)
    assert -(-rows // chunk) >= workers
