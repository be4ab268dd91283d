"""Index ↔ coordinate maps, chunk-aligned shards and image ingestion into zarr."""

import numpy as np
import pytest
import torch
from PIL import Image

from nint_dist.ingest import image_signal, ingest, main
from nint_dist.signal import SignalSpec, flat_to_coords, open_signal, shard_rows, shard_starts


def spec(grid=(6, 5), chunk_rows=2):
    return SignalSpec(grid, 3, (0.0, 255.0), ((-1.0, 1.0), (-1.0, 1.0)), chunk_rows)


def test_coordinates_are_the_row_major_linspace_grid():
    s = spec()
    got = flat_to_coords(torch.arange(30), s, torch.float64)
    ys, xs = np.meshgrid(np.linspace(-1, 1, 6), np.linspace(-1, 1, 5), indexing="ij")
    expected = np.stack([ys.ravel(), xs.ravel()], axis=-1)
    assert np.allclose(got.numpy(), expected, atol=1e-15)


def test_shards_are_chunk_aligned_and_cover_the_signal():
    s = spec(grid=(23, 5), chunk_rows=4)  # 6 chunk rows, the last one short
    for world in (1, 2, 3, 4, 6):
        rows = [shard_rows(s, world, r) for r in range(world)]
        assert rows[0][0] == 0 and rows[-1][1] == 23
        assert all(a[1] == b[0] and a[1] % 4 == 0 for a, b in zip(rows, rows[1:], strict=False))
        assert shard_starts(s, world) == [lo * 5 for lo, _ in rows] + [115]
    with pytest.raises(ValueError, match="too few for 7 workers"):
        shard_rows(s, 7, 0)


@pytest.mark.parametrize("mode,channels", [("RGB", 3), ("L", 1), ("RGBA", 4)])
def test_ingest_image_round_trip(tmp_path, mode, channels):
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (37, 29, channels), dtype=np.uint8)
    src = tmp_path / "in.png"
    Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode).save(src)
    ingest(src, tmp_path / "out.zarr", chunk_rows=8)
    array, s = open_signal(tmp_path / "out.zarr")
    assert np.array_equal(array[...], pixels)
    assert s.grid == (37, 29) and s.channels == channels and s.chunk_rows == 8
    assert s.value_range == (0.0, 255.0) and s.domain == ((-1.0, 1.0), (-1.0, 1.0))
    assert array.metadata.zarr_format == 3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind
    in_memory, same = image_signal(src)  # the benchmarks' in-memory path reads it alike
    assert isinstance(in_memory, np.ndarray) and np.array_equal(in_memory, pixels)
    assert (same.grid, same.channels, same.value_range) == (s.grid, channels, s.value_range)


def test_ingest_refuses_bad_input_without_writing(tmp_path, capsys):
    truncated = tmp_path / "cut.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "full.png")
    truncated.write_bytes((tmp_path / "full.png").read_bytes()[:60])
    assert main([str(truncated), str(tmp_path / "a.zarr")]) == 2
    assert main([str(tmp_path / "absent.png"), str(tmp_path / "b.zarr")]) == 2
    (tmp_path / "c.zarr").mkdir()
    assert main([str(tmp_path / "full.png"), str(tmp_path / "c.zarr")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("error: ") for line in err)
    assert not (tmp_path / "a.zarr").exists() and not (tmp_path / "b.zarr").exists()
    assert not any((tmp_path / "c.zarr").iterdir())
