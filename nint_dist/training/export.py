"""The run's final output: the model's prediction at every stored point, written as
RUN_DIR/reconstruction.zarr (each worker its own rows), then the modality's files (image, WAV,
mesh) and their final metrics from worker 0 (``outputs.export_reconstruction``)."""

from pathlib import Path

import torch

from nint_dist import scoring
from nint_dist.comm import Comm
from nint_dist.outputs import export_reconstruction
from nint_dist.shard import Shard
from nint_dist.signal import ATTRS_KEY, from_unit

RECONSTRUCTION = "reconstruction.zarr"


def write_reconstruction(
    model: torch.nn.Module,
    shard: Shard,
    array,
    rows: tuple[int, int],
    comm: Comm,
    run_dir: str | Path,
    pass_size: int,
) -> dict[str, float]:
    """Each worker writes its own ``rows`` of ``reconstruction.zarr`` (shards are chunk-aligned,
    so no two workers touch one chunk), one chunk row at a time (bounded memory); worker 0 then
    exports the modality's files and returns its extra final metrics. Collective."""
    import zarr

    spec, run_dir = shard.spec, Path(run_dir)
    path = run_dir / RECONSTRUCTION
    if comm.rank == 0:
        zarr.create_array(
            store=str(path),
            shape=array.shape,
            chunks=array.chunks,
            dtype=array.dtype,
            zarr_format=3,
            overwrite=True,
            attributes={ATTRS_KEY: spec.to_attrs()},  # the source's checksums do not apply
        )
    comm.barrier()
    out = zarr.open_array(str(path), mode="r+")
    row_lo, row_hi = rows
    for lo in range(row_lo, row_hi, spec.chunk_rows):
        hi = min(lo + spec.chunk_rows, row_hi)
        first = (lo - row_lo) * spec.points_per_row
        count = (hi - lo) * spec.points_per_row
        coords = lambda a, b, first=first: shard.coords(first + a, first + b)  # noqa: E731
        values = scoring.predict(model, coords, count, pass_size).float().cpu().numpy()
        out[lo:hi] = from_unit(values, spec, array.dtype).reshape(hi - lo, *array.shape[1:])
    comm.barrier()
    if comm.rank == 0:
        return export_reconstruction(spec, path, run_dir, source=array)
    return {}
