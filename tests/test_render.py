"""Rendering a trained INR on other grids, against the run's own reconstruction."""

import numpy as np
import pytest
import zarr

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
    assert (tmp_path / "a.png").exists()


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
