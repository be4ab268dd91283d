"""The Python API: fit a signal and load a fitted INR, from a notebook or a script.

    import nint_dist
    run = nint_dist.fit(image, train={"steps": 300}, model={"width": 64})
    run.metrics["psnr"], run.dir
    inr = nint_dist.load(run.dir)          # or run.model
    values = inr(coords)                   # [N, D] coordinates in the signal's domain
    twice = inr.render(scale=2)            # the whole grid, twice as many points per axis

``fit`` is the command line's fit (``nint fit``) in this process: the same validation, run
directory, backend choice and outputs. Mistakes raise ``ValueError`` with the command line's
one-line message; a failed run raises ``RuntimeError``.
"""

import datetime
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nint_dist.signal import SignalSpec, from_unit


def _value_text(value) -> str:
    """A Python value as omegaconf's dotlist parses it back (YAML)."""
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if isinstance(value, Path):
        return str(value)
    return json.dumps(value)


def override_list(overrides: dict) -> list[str]:
    """Nested or dotted keyword overrides → ``key=value`` strings:
    ``{"train": {"steps": 200}, "model.width": 64}`` → ``["train.steps=200", "model.width=64"]``."""
    items = []
    for key, value in overrides.items():
        if isinstance(value, dict):
            items += override_list({f"{key}.{k}": v for k, v in value.items()})
        else:
            items.append(f"{key}={_value_text(value)}")
    return items


def _signal_path(signal, folder: Path) -> str:
    """A path, URL or zarr array → ``data.path``; a NumPy array is saved as ``.npy`` in ``folder``
    and ingested from there (grid from its shape, as ``nint ingest`` reads ``.npy``)."""
    if isinstance(signal, np.ndarray):
        path = folder / "signal.npy"
        np.save(path, signal)
        return str(path)
    if isinstance(signal, (str, Path)):
        return str(signal)
    store = getattr(signal, "store", None)  # a zarr.Array opened from a local store
    root = getattr(store, "root", None)
    if root is not None:
        return str(Path(root) / getattr(signal, "path", ""))
    raise TypeError(f"signal must be a NumPy array, a path or a zarr array, not {type(signal).__name__}")


@dataclass
class Run:
    """A finished run: its directory and what it wrote there."""

    dir: Path

    @property
    def metrics(self) -> dict:
        """final.json: psnr, steps, train_seconds, device, workers, … (SSIM, SI-SNR, IoU by modality)."""
        return json.loads((self.dir / "final.json").read_text())

    @property
    def history(self) -> list[dict]:
        """metrics.jsonl: one row per evaluation."""
        return [json.loads(line) for line in (self.dir / "metrics.jsonl").read_text().splitlines() if line]

    @property
    def config(self):
        """The config as given (file + overrides); what it resolved to is :attr:`plan`."""
        from nint_dist.plan import read_run_files

        return read_run_files(self.dir)[0]

    @property
    def plan(self):
        """plan.json: the signal store, workers, backend, device and rows per worker it ran with."""
        from nint_dist.plan import read_run_files

        return read_run_files(self.dir)[1]

    @property
    def model(self) -> "INR":
        """The fitted INR, on a GPU when there is one."""
        return load(self.dir)


def fit(signal, config: str | Path | None = None, **overrides) -> Run:
    """Fit an INR to ``signal`` (a NumPy array, a file path, a ``.zarr`` signal store or its URL,
    or a zarr array) and return the finished :class:`Run`.

    ``config`` is an optional YAML file (e.g. ``configs/quickstart.yaml``); ``overrides`` are
    config keys, nested (``train={"steps": 200}``) or dotted (``**{"train.steps": 200}``).
    Without ``run={"dir": …}`` the run goes to ``runs/fit-<time>``; the progress bar is off
    unless ``log={"progress": True}``.
    """
    from nint_dist import launch

    items = override_list(overrides)
    keys = {item.split("=", 1)[0] for item in items}
    if "run.dir" not in keys:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        items.append(f"run.dir={Path('runs') / f'fit-{stamp}'}")
    if "log.progress" not in keys:
        items.append("log.progress=false")
    with tempfile.TemporaryDirectory(prefix="nint-fit-") as folder:
        items.append(f"data.path={_signal_path(signal, Path(folder))}")
        run_dir = launch.fit(str(config) if config is not None else None, items)
    return Run(run_dir)


class INR:
    """A fitted implicit neural representation: call it on coordinates, or render a grid.

    Coordinates are in the signal's domain (``spec.domain``: [-1, 1] per axis unless the input
    said otherwise); values come back in the signal's units (``spec.value_range``), as float32.
    """

    def __init__(self, module: torch.nn.Module, spec: SignalSpec, config, dtype: torch.dtype, run_dir: Path):
        self.module, self.spec, self.config, self.dtype, self.run_dir = module, spec, config, dtype, run_dir

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    def to(self, device: str | torch.device) -> "INR":
        self.module.to(torch.device(device))
        return self

    def _pass_size(self) -> int:
        return self.config.log.eval_pass_size_on(self.device.type)

    @torch.no_grad()
    def predict_unit(self, coords: torch.Tensor) -> torch.Tensor:
        """Raw outputs (targets map [value_range] onto [0, 1]) for coordinates [N, D], pass by pass
        (``log.eval_pass_size`` coordinates each)."""
        from nint_dist.scoring import predict

        coords = coords.to(self.device, self.dtype)
        return predict(self.module, lambda lo, hi: coords[lo:hi], coords.shape[0], self._pass_size())

    def __call__(self, coords) -> np.ndarray:
        """Values [N, C] at coordinates [N, D] (NumPy or torch)."""
        coords = torch.as_tensor(np.asarray(coords) if not torch.is_tensor(coords) else coords)
        if coords.ndim != 2 or coords.shape[1] != len(self.spec.grid):
            raise ValueError(
                f"coordinates must have shape [N, {len(self.spec.grid)}], not {tuple(coords.shape)}"
            )
        unit = self.predict_unit(coords).double().cpu().numpy()
        return from_unit(unit, self.spec, np.dtype(np.float32))

    def render(
        self, scale: float | None = None, shape: tuple[int, ...] | None = None, region: str | None = None
    ):
        """The INR on a grid: the training grid (default), ``scale``× as many points per axis, or
        ``shape`` points; ``region`` ``"A:B,C:D"`` in grid points of the signal crops it. Returns
        an array [*grid, C] in the signal's units (float32)."""
        from nint_dist.render import axis_coordinates, output_shape, parse_region

        bounds = parse_region(region, self.spec.grid)
        dims = output_shape(bounds, scale, ",".join(str(d) for d in shape) if shape else None)
        axes = axis_coordinates(self.spec, bounds, dims)
        grids = torch.meshgrid(*axes, indexing="ij")
        coords = torch.stack([g.reshape(-1) for g in grids], dim=-1)
        return self(coords).reshape(*dims, self.spec.channels)


def load(run_dir: str | Path, device: str | torch.device | None = None) -> INR:
    """The INR of a run directory (its newest intact checkpoint), on ``device`` (default: a GPU
    when there is one, else the CPU)."""
    from nint_dist.devices import resolve_device
    from nint_dist.render import load_run

    run = load_run(run_dir, resolve_device(device, "device"))
    return INR(run.model, run.spec, run.cfg, run.dtype, run.dir)
