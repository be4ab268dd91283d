"""Shared fixtures: one local Ray instance for the whole session, small signals on disk."""

import os
from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
REPO = Path(__file__).resolve().parents[1]


EXACT_FIT = [
    "model.layers=3",
    "model.width=16",
    "sampler.name=nint-paper",
    "sampler.chunk=64",
    "train.lr=1e-3",
    "train.dtype=float64",
]
"""Overrides of a small float64 fit whose runs compare exactly (resume, faults)."""


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray instance shared by every test that needs one; shut down at the end."""
    import ray

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.pop("RAY_ADDRESS", None)
    ray.init(num_cpus=8, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"test signals not found at {SHARED_DATA}")
    return SHARED_DATA


def small_image(src: Path, dst: Path, long_side: int) -> Path:
    """A downscaled RGB copy of a shared photograph."""
    from PIL import Image

    with Image.open(src) as img:
        img = img.convert("RGB")
        scale = long_side / max(img.size)
        img.resize((round(img.width * scale), round(img.height * scale)), Image.LANCZOS).save(dst)
    return dst


@pytest.fixture
def tiny_signal(tmp_path) -> Path:
    return make_tiny_signal(tmp_path)


def make_tiny_signal(folder: Path, rows: int = 24, cols: int = 20, chunk_rows: int = 4) -> Path:
    """A small RGB gradient-plus-texture signal in zarr (24x20 in chunks of 4 rows: 6 chunk rows)."""
    from nint_dist.ingest import write_signal
    from nint_dist.signal import SignalSpec

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:rows, 0:cols]
    base = np.stack([xx * 12, yy * 10, (xx + yy) * 5], axis=-1) + rng.integers(0, 40, (rows, cols, 3))
    array = np.clip(base, 0, 255).astype(np.uint8)
    spec = SignalSpec((rows, cols), 3, (0.0, 255.0), ((-1.0, 1.0), (-1.0, 1.0)), chunk_rows=chunk_rows)
    path = folder / f"tiny-{rows}x{cols}.zarr"
    write_signal(array, spec, path, progress=False)
    return path


@pytest.fixture(scope="module")
def tiny_signal_module(tmp_path_factory) -> Path:
    return make_tiny_signal(tmp_path_factory.mktemp("signal"))


def checkpoint_params(run_dir: Path):
    """All parameters of a run's newest checkpoint, as one float64 vector."""
    import torch

    from nint_dist import checkpoint

    state = checkpoint.load(checkpoint.latest(run_dir))
    return torch.cat([v.reshape(-1).double() for v in state["model"].values()])
