"""Rendering a trained INR on other grids, against the run's own reconstruction."""

import numpy as np
import pytest
import zarr
from PIL import Image

from nint_dist import launch, render


@pytest.fixture(scope="module")
def run_dir(tiny_signal_module, tmp_path_factory):
    out = tmp_path_factory.mktemp("render") / "run"
    args = [
        "configs/quickstart.yaml",
        f"data.path={tiny_signal_module}",
        f"run.dir={out}",
        "run.backend=local",
        "train.workers=1",
        "train.steps=20",
        "model.layers=3",
        "model.width=16",
        "log.progress=false",
        "log.tensorboard=false",
    ]
    assert launch.main(args) == 0
    return out


def test_scale_one_reproduces_the_reconstruction(run_dir, tmp_path):
    assert render.main([str(run_dir), str(tmp_path / "a.zarr")]) == 0
    expected = zarr.open_array(str(run_dir / "reconstruction.zarr"))[...]
    assert np.array_equal(zarr.open_array(str(tmp_path / "a.zarr"))[...], expected)
    png = np.asarray(Image.open(tmp_path / "a.png"))  # the export's PNG writer, the same pixels
    assert np.array_equal(png, np.asarray(Image.open(run_dir / "reconstruction.png")))


def test_the_model_is_loaded_once_for_all_bands(run_dir, tmp_path, monkeypatch):
    """24 output rows in bands of one chunk row each, rendered with one model: one checkpoint
    read, one run directory read."""
    from nint_dist import checkpoint

    calls = {"load_run": 0, "checkpoint": 0, "bands": 0}

    def counted(name, function):
        def call(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)

        return call

    monkeypatch.setattr(render, "load_run", counted("load_run", render.load_run))
    monkeypatch.setattr(checkpoint, "load", counted("checkpoint", checkpoint.load))
    monkeypatch.setattr(render, "render_rows", counted("bands", render.render_rows))
    assert render.main([str(run_dir), str(tmp_path / "once.zarr"), "--device", "cpu"]) == 0
    assert calls["bands"] > 1 and calls["load_run"] == 1 and calls["checkpoint"] == 1, calls


def test_scale_two_doubles_height_and_width(run_dir, tmp_path):
    assert render.main([str(run_dir), str(tmp_path / "b.zarr"), "--scale", "2"]) == 0
    out = zarr.open_array(str(tmp_path / "b.zarr"))
    expected = zarr.open_array(str(run_dir / "reconstruction.zarr"))[...]
    assert out.shape == (48, 40, 3)
    corners = out[...][[0, 0, -1, -1], [0, -1, 0, -1]]
    assert np.array_equal(corners, expected[[0, 0, -1, -1], [0, -1, 0, -1]])  # same end points


def test_region_crop_and_ray_tiling_agree(run_dir, tmp_path, ray_session):
    assert render.main([str(run_dir), str(tmp_path / "c.zarr"), "--region", "4:20,2:18"]) == 0
    assert (
        render.main([str(run_dir), str(tmp_path / "d.zarr"), "--region", "4:20,2:18", "--workers", "2"]) == 0
    )
    expected = zarr.open_array(str(run_dir / "reconstruction.zarr"))[4:20, 2:18]
    assert np.array_equal(zarr.open_array(str(tmp_path / "c.zarr"))[...], expected)
    assert np.array_equal(zarr.open_array(str(tmp_path / "d.zarr"))[...], expected)


@pytest.mark.parametrize("args", [["--scale", "0"], ["--region", "5:2,0:4"], ["--shape", "a,b"]])
def test_bad_arguments_exit_2(run_dir, tmp_path, capsys, args):
    assert render.main([str(run_dir), str(tmp_path / "e.zarr"), *args]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert not (tmp_path / "e.zarr").exists()


def test_not_a_run_directory(tmp_path, capsys):
    assert render.main([str(tmp_path), str(tmp_path / "f.zarr")]) == 2
    assert "not a run directory" in capsys.readouterr().err


def mean_2x2_by_hand(image: np.ndarray) -> np.ndarray:
    """2x2 means of [H, W, C] computed cell by cell; a last odd row/column averages what it has."""
    height, width = image.shape[:2]
    out = np.zeros(((height + 1) // 2, (width + 1) // 2, image.shape[2]))
    for y in range(out.shape[0]):
        for x in range(out.shape[1]):
            out[y, x] = image[2 * y : 2 * y + 2, 2 * x : 2 * x + 2].reshape(-1, image.shape[2]).mean(axis=0)
    return np.rint(out) if np.issubdtype(image.dtype, np.integer) else out


def test_pyramid_levels_against_a_downsample_by_hand(tmp_path):
    from nint_dist.outputs import write_pyramid

    image = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    source = zarr.create_array(
        store=str(tmp_path / "img.zarr"), shape=image.shape, chunks=(8, 53, 3), dtype="u1"
    )
    source[...] = image
    shapes = write_pyramid(source, tmp_path / "p.ome.zarr", min_side=8, tile=4)
    assert shapes == [(3, 37, 53), (3, 19, 27), (3, 10, 14), (3, 5, 7)]
    group = zarr.open_group(str(tmp_path / "p.ome.zarr"), mode="r")
    (meta,) = group.attrs["multiscales"]
    assert meta["version"] == "0.4" and [a["name"] for a in meta["axes"]] == ["c", "y", "x"]
    assert [d["coordinateTransformations"][0]["scale"] for d in meta["datasets"]][2] == [1.0, 4.0, 4.0]
    expected = image
    for level, shape in enumerate(shapes):
        got = np.moveaxis(group[str(level)][...], 0, -1)
        assert got.shape == shape[1:] + (3,)
        assert np.array_equal(got, expected), level
        expected = mean_2x2_by_hand(got)  # each level from the one before, as the pyramid is built


def test_render_writes_a_pyramid_and_prints_where(run_dir, tmp_path, capsys):
    assert render.main([str(run_dir), str(tmp_path / "g.zarr"), "--pyramid", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert f"pyramid: {tmp_path / 'g.ome.zarr'}" in out and not (tmp_path / "g.png").exists()
    level0 = zarr.open_group(str(tmp_path / "g.ome.zarr"), mode="r")["0"][...]
    expected = zarr.open_array(str(run_dir / "reconstruction.zarr"))[...]
    assert np.array_equal(np.moveaxis(level0, 0, -1), expected)
    assert render.main([str(run_dir), str(tmp_path / "h.zarr")]) == 0
    assert f"image: {tmp_path / 'h.png'}" in capsys.readouterr().out


def test_render_device_cuda_without_a_gpu_is_one_line(run_dir, tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert render.main([str(run_dir), str(tmp_path / "i.zarr"), "--device", "cuda"]) == 2
    assert "no GPU is visible" in capsys.readouterr().err and not (tmp_path / "i.zarr").exists()


def test_render_tasks_ask_for_gpus_only_where_the_cluster_has_them(ray_session):
    gpus = ray_session.cluster_resources().get("GPU", 0)
    assert render.ray_gpus_per_task(ray_session, "cpu") == 0.0
    assert render.ray_gpus_per_task(ray_session, "auto") == (1.0 if gpus else 0.0)
    if not gpus:
        with pytest.raises(render.UserError, match="no GPUs"):
            render.ray_gpus_per_task(ray_session, "cuda")
