"""Plain helpers the tests share: paths, small signals made on the spot, a fit through the launcher.

Fixtures live in ``tests/conftest.py``; everything here is an ordinary function or constant, so a
test module imports it by name (``from tests.helpers import …``). Every signal a test reads is in
the repository (``tests/data/``, ``nint_dist/assets/``) or is generated here; nothing outside the
repository is needed."""

import socket
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
"""Small real signals with their provenance and licence (``tests/data/README.md``)."""
SAMPLE = REPO / "nint_dist" / "assets" / "sample.png"
"""The bundled quickstart photograph (Kodak kodim05 at 192x128)."""
QUICKSTART = "configs/quickstart.yaml"
"""The config every launched test fit starts from (relative: the tests run from the repository)."""


EXACT_FIT = [
    "model.layers=3",
    "model.width=16",
    "sampler.name=nint-paper",
    "sampler.pass_size=64",
    "log.eval_pass_size=64",
    "train.lr=1e-3",
    "train.dtype=float64",
]
"""Overrides of a small float64 fit whose runs compare exactly (resume, faults)."""


def launch_fit(signal: Path | str, run_dir: Path | str, *overrides: str) -> int:
    """Fit ``signal`` into ``run_dir`` through ``nint_dist.launch`` in this process, from the
    quickstart config and the given ``key=value`` overrides; the launcher's exit status."""
    from nint_dist import launch

    return launch.main([QUICKSTART, f"data.path={signal}", f"run.dir={run_dir}", *overrides])


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (for a gloo group or an unreachable address)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def leave_spawned_rank() -> None:
    """End a spawned test process that joined a gloo group, once its result is handed over: a
    barrier (no rank tears its connections down while another still uses them), the group
    destroyed, then ``os._exit``: the interpreter's own teardown sometimes aborted (SIGABRT) on a
    thread gloo had left."""
    import os

    import torch.distributed as dist

    dist.barrier()
    dist.destroy_process_group()
    os._exit(0)


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


def small_image(src: Path, dst: Path, long_side: int) -> Path:
    """A downscaled RGB copy of a photograph."""
    from PIL import Image

    with Image.open(src) as img:
        img = img.convert("RGB")
        scale = long_side / max(img.size)
        img.resize((round(img.width * scale), round(img.height * scale)), Image.LANCZOS).save(dst)
    return dst


def checkpoint_params(run_dir: Path):
    """All parameters of a run's newest checkpoint, as one float64 vector."""
    import torch

    from nint_dist import checkpoint

    state = checkpoint.load(checkpoint.latest(run_dir))
    return torch.cat([v.reshape(-1).double() for v in state["model"].values()])


def make_audio(rate: int = 44100, frames: int = 2048) -> np.ndarray:
    """A mono test tone [frames] float32 in [-1, 1]: two partials under a decaying envelope and a
    chirp, so it has structure at several frequencies (not a single sine a SIREN fits at once)."""
    t = np.arange(frames) / rate
    envelope = np.exp(-t / (frames / rate / 2))
    tone = 0.5 * np.sin(2 * np.pi * 440 * t) + 0.25 * np.sin(2 * np.pi * 1320 * t + 0.3)
    chirp = 0.2 * np.sin(2 * np.pi * (200 * t + 0.5 * 4000 * t**2 / t[-1]))
    return ((tone + chirp) * envelope).astype(np.float32)


def torus_mesh(major: float = 1.0, minor: float = 0.4, around: int = 24, tube: int = 12):
    """A closed, consistently oriented triangle mesh of a torus: (vertices [V, 3], faces [F, 3])."""
    u = np.linspace(0, 2 * np.pi, around, endpoint=False)
    v = np.linspace(0, 2 * np.pi, tube, endpoint=False)
    uu, vv = np.meshgrid(u, v, indexing="ij")
    ring = major + minor * np.cos(vv)
    vertices = np.stack([ring * np.cos(uu), ring * np.sin(uu), minor * np.sin(vv)], -1).reshape(-1, 3)
    faces = []
    for i in range(around):
        for j in range(tube):
            a, b = i * tube + j, ((i + 1) % around) * tube + j
            c, d = ((i + 1) % around) * tube + (j + 1) % tube, i * tube + (j + 1) % tube
            faces += [[a, b, c], [a, c, d]]
    return vertices, np.array(faces)


def write_obj(path: Path, vertices, faces) -> Path:
    """A Wavefront OBJ file of a triangle mesh (1-based face indices)."""
    lines = [f"v {x} {y} {z}" for x, y, z in vertices] + [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in faces]
    path.write_text("\n".join(lines) + "\n")
    return path
