"""``python -m nint_dist.render RUN_DIR OUT [--scale S | --shape N,…] [--region A:B,…]``:
evaluate a trained INR on any grid — the whole signal, a crop, or a super-resolved version —
and write it as a zarr signal store, plus for images a PNG when small enough and otherwise (or
with ``--pyramid``) an OME-Zarr multiscale pyramid that image viewers open.

The output grid spans the region's first to last grid point of the original signal (the whole
signal by default), with ``scale``× as many points per axis (or ``shape`` points), so scale 1
reproduces the training grid exactly and scale 2 doubles the height and width. The grid is
split into bands of whole output chunks; with ``--workers N`` the bands are rendered by N Ray
tasks, each writing its own chunks (no two tasks touch one chunk), each given a GPU where the
cluster has them (``--device auto``) or must (``--device cuda``).
"""

import argparse
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nint_dist.config import Config
from nint_dist.devices import resolve_device
from nint_dist.errors import UserError, run_cli
from nint_dist.plan import RunPlan, read_run_files
from nint_dist.signal import ATTRS_KEY, SignalSpec, from_unit, open_signal


def parse_region(text: str | None, grid: tuple[int, ...]) -> list[tuple[float, float]]:
    """'A:B,C:D' in grid points of the original signal → [(first, last)] per axis (inclusive)."""
    if not text:
        return [(0.0, float(size - 1)) for size in grid]
    parts = text.split(",")
    if len(parts) != len(grid):
        raise UserError(f"--region needs {len(grid)} ranges A:B separated by commas, got {text!r}")
    region = []
    for part, size in zip(parts, grid, strict=True):
        try:
            lo, hi = (float(v) for v in part.split(":"))
        except ValueError:
            raise UserError(f"--region range {part!r} is not of the form A:B") from None
        if not 0 <= lo < hi <= size:
            raise UserError(f"--region range {part!r} must satisfy 0 <= A < B <= {size}")
        region.append((lo, hi - 1))
    return region


def output_shape(region, scale: float | None, shape: str | None) -> tuple[int, ...]:
    if shape:
        try:
            dims = tuple(int(v) for v in shape.split(","))
        except ValueError:
            raise UserError(f"--shape {shape!r} is not a list of integers") from None
        if len(dims) != len(region) or min(dims) < 1:
            raise UserError(f"--shape needs {len(region)} positive sizes")
        return dims
    scale = 1.0 if scale is None else scale
    if scale <= 0:
        raise UserError("--scale must be positive")
    return tuple(max(1, round((last - first + 1) * scale)) for first, last in region)


def axis_coordinates(spec: SignalSpec, region, shape) -> list[torch.Tensor]:
    """Coordinates along each output axis: ``n`` evenly spaced points from the region's first to
    last original grid point, mapped into the signal's coordinate domain."""
    axes = []
    for (first, last), n, size, (lo, hi) in zip(region, shape, spec.grid, spec.domain, strict=True):
        points = torch.linspace(first, last, n, dtype=torch.float64) if n > 1 else torch.tensor([first / 1.0])
        step = (hi - lo) / (size - 1) if size > 1 else 0.0
        axes.append(
            lo + points * step if size > 1 else torch.full((n,), 0.5 * (lo + hi), dtype=torch.float64)
        )
    return axes


@dataclass(frozen=True)
class FittedRun:
    """A run directory read back: its config (as the user gave it), its plan, the signal's spec
    and stored dtype, and the fitted model (None when only the description was asked for)."""

    dir: Path
    cfg: Config
    plan: RunPlan
    spec: SignalSpec
    stored_dtype: np.dtype
    model: torch.nn.Module | None
    dtype: torch.dtype


def load_run(run_dir: str | Path, device: torch.device | None = None) -> FittedRun:
    """Read a run directory once: config and plan, the spec of the signal it trained on (from the
    plan's store), and with ``device`` the model of its newest intact checkpoint on that device."""
    from nint_dist import checkpoint
    from nint_dist.models import build_model

    run_dir = Path(run_dir)
    cfg, plan = read_run_files(run_dir)
    store, spec = open_signal(plan.signal)
    dtype = {"float32": torch.float32, "float64": torch.float64}[cfg.train.dtype]
    model = None
    if device is not None:
        latest = checkpoint.latest(run_dir)
        if latest is None:
            raise UserError(f"{run_dir} holds no checkpoint to render")
        state = checkpoint.load(latest, device)
        model = build_model(len(spec.grid), spec.channels, cfg.model).to(device, dtype)
        model.load_state_dict(state["model"])
        model.eval()
    return FittedRun(run_dir, cfg, plan, spec, np.dtype(store.dtype), model, dtype)


def render_rows(
    run: FittedRun, out: str, region, shape, row_lo: int, row_hi: int, pass_size: int | None
) -> int:
    """Evaluate output rows [row_lo, row_hi) with the run's model and write them into the output
    store, ``pass_size`` points per forward pass (None: the run's ``log.eval_pass_size`` for the model's
    device). Returns the number of points written."""
    import zarr

    from nint_dist.scoring import predict

    device = next(run.model.parameters()).device
    pass_size = pass_size or run.cfg.log.eval_pass_size_on(device.type)
    axes = axis_coordinates(run.spec, region, shape)
    grids = torch.meshgrid(axes[0][row_lo:row_hi], *axes[1:], indexing="ij")
    coords = torch.stack([g.reshape(-1) for g in grids], dim=-1).to(device, run.dtype)
    with torch.no_grad():
        values = predict(run.model, lambda lo, hi: coords[lo:hi], coords.shape[0], pass_size)
    block = from_unit(values.double().cpu().numpy(), run.spec, run.stored_dtype)
    target = zarr.open_array(out, mode="r+")
    target[row_lo:row_hi] = block.reshape(row_hi - row_lo, *shape[1:], run.spec.channels)
    return coords.shape[0]


def render_bands(
    run_dir: str,
    out: str,
    region,
    shape,
    bands: list[tuple[int, int]],
    pass_size: int | None = None,
    device: str = "auto",
) -> int:
    """Load the run's model once and render ``bands`` ([row_lo, row_hi) each) with it: one Ray
    task's share, or all of them in this process. Returns the number of points written."""
    run = load_run(run_dir, resolve_device(device, "--device"))
    return sum(render_rows(run, out, region, shape, lo, hi, pass_size) for lo, hi in bands)


def render(
    run_dir: Path,
    out: Path,
    scale: float | None,
    shape: str | None,
    region_text: str | None,
    workers: int = 1,
    pass_size: int | None = None,
    device: str = "auto",
    pyramid: bool = False,
    progress: bool = True,
) -> tuple[tuple[int, ...], SignalSpec, list[Path]]:
    """Render and write ``out``; returns the grid, the output's spec and the viewable files
    written beside it (a PNG, or a pyramid for images too large for one or when asked)."""
    import zarr
    from tqdm import tqdm

    from nint_dist.ingest import default_chunk_rows
    from nint_dist.outputs import PNG_MAX_PIXELS, write_png, write_pyramid

    if out.exists():
        raise UserError(f"output {out} already exists; remove it or choose another path")
    if device not in ("auto", "cpu", "cuda"):
        raise UserError(f"--device must be auto, cpu or cuda, not {device!r}")
    if workers < 1:
        raise UserError("--workers must be at least 1")
    if workers == 1:  # the model once, here; refuses cuda without a GPU before anything is written
        run = load_run(run_dir, resolve_device(device, "--device"))
    else:  # each Ray task loads it for its bands
        run = load_run(run_dir)
    spec = run.spec
    region = parse_region(region_text, spec.grid)
    dims = output_shape(region, scale, shape)
    stored = run.stored_dtype
    rows = default_chunk_rows((*dims, spec.channels), stored.itemsize)
    out_spec = SignalSpec(
        dims,
        spec.channels,
        spec.value_range,
        tuple((float(a[0]), float(a[-1])) for a in axis_coordinates(spec, region, dims)),
        rows,
        spec.kind,
    )
    tmp = out.with_name(f".{out.name}.rendering")
    if tmp.exists():
        shutil.rmtree(tmp)
    if not out.parent.is_dir():
        raise UserError(f"cannot write {out}: directory {out.parent} does not exist")
    zarr.create_array(
        store=str(tmp),
        shape=(*dims, spec.channels),
        chunks=(rows, *dims[1:], spec.channels),
        dtype=stored,
        zarr_format=3,
        attributes={ATTRS_KEY: out_spec.to_attrs()},
    )
    bands = [(lo, min(lo + rows, dims[0])) for lo in range(0, dims[0], rows)]
    bar = tqdm(total=dims[0], unit="row", disable=not progress, file=sys.stderr, dynamic_ncols=True)
    if workers > 1:
        import ray

        if not ray.is_initialized():
            ray.init(log_to_driver=False, include_dashboard=False, logging_level="WARNING")
        task = ray.remote(num_gpus=ray_gpus_per_task(ray, device))(render_bands)
        per_task = -(-len(bands) // workers)
        groups = [bands[i : i + per_task] for i in range(0, len(bands), per_task)]
        pending = {task.remote(str(run_dir), str(tmp), region, dims, g, pass_size, device): g for g in groups}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            ray.get(done[0])
            group = pending.pop(done[0])
            bar.update(group[-1][1] - group[0][0])
    else:
        for lo, hi in bands:
            render_rows(run, str(tmp), region, dims, lo, hi, pass_size)
            bar.update(hi - lo)
    bar.close()
    tmp.rename(out)
    written: list[Path] = []
    if spec.kind == "image" and len(dims) == 2:
        recon = zarr.open_array(str(out), mode="r")
        if pyramid or np.prod(dims) > PNG_MAX_PIXELS:
            written.append(out.with_name(out.stem + ".ome.zarr"))
            write_pyramid(recon, written[-1])
        else:
            written.append(out.with_suffix(".png"))
            write_png(written[-1], np.asarray(recon[...]), out_spec)
    return dims, spec, written


def ray_gpus_per_task(ray, device: str) -> float:
    """A GPU per render task where the cluster has GPUs (auto) or must (cuda); none on cpu."""
    gpus = ray.cluster_resources().get("GPU", 0)
    if device == "cuda" and gpus < 1:
        raise UserError("--device cuda but the Ray cluster has no GPUs; use --device cpu or auto")
    return 1.0 if device != "cpu" and gpus >= 1 else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nint_dist.render", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a run directory written by nint_dist.launch")
    parser.add_argument("out", type=Path, help="output .zarr path (a .png is written beside it for images)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--scale", type=float, default=None, help="points per original grid step (2 = 2x)")
    size.add_argument("--shape", default=None, help="output points per axis, e.g. 2048,2048")
    parser.add_argument("--region", default=None, help="crop in original grid points, e.g. 100:300,0:512")
    parser.add_argument("--workers", type=int, default=1, help="Ray tasks rendering bands in parallel")
    parser.add_argument(
        "--device",
        default="auto",
        choices=("auto", "cpu", "cuda"),
        help="where the INR is evaluated; auto: a GPU where there is one (one per Ray task on a GPU cluster)",
    )
    parser.add_argument(
        "--pyramid",
        action="store_true",
        help="images: write an OME-Zarr multiscale pyramid (OUT.ome.zarr) instead of a PNG"
        " (automatic above 2^26 pixels)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    def body() -> int:
        dims, _, written = render(
            args.run_dir,
            args.out,
            args.scale,
            args.shape,
            args.region,
            args.workers,
            device=args.device,
            pyramid=args.pyramid,
            progress=not args.no_progress,
        )
        print(f"wrote {args.out}: grid {dims}")
        for path in written:
            kind = "pyramid" if path.name.endswith(".ome.zarr") else "image"
            print(f"{kind}: {path}")
        return 0

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
