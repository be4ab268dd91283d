"""The Python API: fit an array in this process, load the run as a callable INR, and the README's
notebook example run as written (with fewer steps)."""

import re

import numpy as np
import pytest
import zarr

import nint_dist
from nint_dist.api import override_list
from tests.helpers import REPO, SAMPLE

TINY = {"model": {"layers": 3, "width": 16}, "train": {"steps": 6, "lr": 1e-3}, "log": {"every": 3}}


def test_overrides_nested_and_dotted():
    items = override_list({"train": {"steps": 200, "max_seconds": None}, "model.width": 64, "run.dir": "a b"})
    assert items == ["train.steps=200", "train.max_seconds=null", "model.width=64", "run.dir=a b"]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("api")
    yy, xx = np.mgrid[0:24, 0:20]
    image = np.stack([xx * 12, yy * 10, (xx + yy) * 5], -1).astype(np.uint8)
    run = nint_dist.fit(image, **TINY, run={"dir": str(folder / "run")})
    return image, run


def test_fit_an_array_returns_the_run(fitted):
    image, run = fitted
    assert run.dir.is_dir() and run.metrics["steps"] == 6 and run.metrics["workers"] == 1
    assert run.metrics["device"] == "cpu" and [row["step"] for row in run.history] == [3, 6]
    assert run.config.model.width == 16 and run.config.run.backend == "auto"  # the config as given
    assert run.plan.backend == "local" and run.plan.signal == str(run.dir / "signal.zarr")  # resolved
    stored = zarr.open_array(str(run.dir / "signal.zarr"), mode="r")[...]
    assert np.array_equal(stored, image)  # the array went in unchanged


def test_load_renders_what_the_run_wrote(fitted):
    _, run = fitted
    inr = nint_dist.load(run.dir, device="cpu")
    values = inr.render()
    written = zarr.open_array(str(run.dir / "reconstruction.zarr"), mode="r")[...]
    assert values.shape == (24, 20, 3) and values.dtype == np.float32
    assert np.array_equal(np.rint(values).astype(np.uint8), written)
    corners = inr(np.array([[-1.0, -1.0], [1.0, 1.0]]))  # the grid's first and last points
    assert np.allclose(corners, values[[0, -1], [0, -1]], atol=1e-3)
    assert inr.render(scale=2).shape == (48, 40, 3) and inr.render(region="0:8,4:12").shape == (8, 8, 3)
    with pytest.raises(ValueError, match=r"shape \[N, 2\]"):
        inr(np.zeros((3, 3)))


def test_fit_refuses_bad_input_with_the_command_line_message(tmp_path):
    with pytest.raises(ValueError, match="unknown config key 'train.stepz'"):
        nint_dist.fit(np.zeros((8, 8), np.uint8), train={"stepz": 3}, run={"dir": str(tmp_path / "r")})
    assert not (tmp_path / "r").exists()


def test_the_readme_notebook_example_runs(tmp_path, monkeypatch):
    readme = (REPO / "README.md").read_text()
    code = re.search(r"## Python API.*?```python\n(.*?)```", readme, re.S).group(1)
    assert "nint_dist.fit(" in code and "nint_dist.load(" in code
    code = code.replace('"nint_dist/assets/sample.png"', repr(str(SAMPLE)))
    code = code.replace('"steps": 300', '"steps": 4')
    monkeypatch.chdir(tmp_path)
    scope = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["run"].metrics["steps"] == 4 and scope["big"].shape == (256, 384, 3)
