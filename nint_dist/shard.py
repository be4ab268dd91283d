"""A worker's shard of the signal and the selection context built on it.

The shard holds the stored values of a contiguous, chunk-aligned block of rows on the
worker's device, in the stored dtype; coordinates and [0, 1] targets are made per chunk.
``ShardContext`` implements the samplers' ``SelectionContext`` with exact collectives: one
all-reduce of v for NTK scores, an all-gather of local top-k lists merged canonically, and
random picks from a (seed, step) generator that every worker evaluates identically.
"""

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from nint_dist import scoring, selection
from nint_dist.comm import Comm
from nint_dist.signal import SignalSpec, flat_to_coords, shard_rows, shard_starts, to_unit


@dataclass
class Shard:
    spec: SignalSpec
    start: int
    """First global flat index owned."""
    values: torch.Tensor
    """Stored values [n, C] on the device, in the stored dtype."""
    dtype: torch.dtype
    """Compute dtype of coordinates and targets."""

    @property
    def size(self) -> int:
        return self.values.shape[0]

    @property
    def device(self) -> torch.device:
        return self.values.device

    def coords(self, lo: int, hi: int) -> torch.Tensor:
        flat = torch.arange(self.start + lo, self.start + hi, device=self.device)
        return flat_to_coords(flat, self.spec, self.dtype)

    def targets(self, lo: int, hi: int) -> torch.Tensor:
        return to_unit(self.values[lo:hi], self.spec, self.dtype)

    def global_indices(self) -> torch.Tensor:
        return torch.arange(self.start, self.start + self.size)


def load_shard(
    array, spec: SignalSpec, world_size: int, rank: int, device: torch.device, dtype: torch.dtype
) -> Shard:
    """Read only this worker's rows from the zarr array, one chunk row at a time into a tensor
    allocated on the device, so host memory holds one chunk on top of the shard, not a copy."""
    row_lo, row_hi = shard_rows(spec, world_size, rank)
    per_row = spec.points_per_row
    values = torch.empty(
        ((row_hi - row_lo) * per_row, spec.channels),
        dtype=torch.from_numpy(np.empty(0, array.dtype)).dtype,
        device=device,
    )
    for lo in range(row_lo, row_hi, spec.chunk_rows):
        hi = min(lo + spec.chunk_rows, row_hi)
        block = np.ascontiguousarray(array[lo:hi]).reshape(-1, spec.channels)
        values[(lo - row_lo) * per_row : (hi - row_lo) * per_row] = torch.from_numpy(block)
    return Shard(spec, row_lo * per_row, values, dtype)


class ShardContext:
    """SelectionContext over one shard; collective methods use ``comm``."""

    def __init__(self, model: nn.Module, shard: Shard, comm: Comm, chunk: int, seed: int, total_steps: int):
        self.model = model
        self.shard = shard
        self.comm = comm
        self.chunk = chunk
        self.seed = seed
        self.total_steps = total_steps
        self.num_points = shard.spec.num_points
        self.starts = shard_starts(shard.spec, comm.world_size)

    def residual_l1(self) -> torch.Tensor:
        s = self.shard
        return scoring.residual_l1(self.model, s.coords, s.targets, s.size, self.chunk)

    def ntk_scores(self) -> torch.Tensor:
        s = self.shard
        v = scoring.residual_vjp(self.model, s.coords, s.targets, s.size, self.chunk)
        self.comm.all_reduce_sum_(list(v.values()))
        return scoring.ntk_scores(self.model, v, s.coords, s.size, self.chunk)

    def global_topk(
        self, local_scores: torch.Tensor, k: int, exclude: torch.Tensor | None = None
    ) -> torch.Tensor:
        indices = self.shard.global_indices()
        scores = local_scores.detach().cpu()
        if exclude is not None and exclude.numel():
            keep = ~selection.isin_sorted(indices, torch.sort(exclude.cpu()).values)
            scores, indices = scores[keep], indices[keep]
        scores, indices = selection.topk_canonical(scores, indices, k)
        all_scores = self.comm.all_gather_padded(scores, k, float("-inf"))
        all_indices = self.comm.all_gather_padded(indices, k, -1)
        valid = all_indices >= 0
        merged = selection.topk_canonical(all_scores[valid], all_indices[valid], k)[1]
        if merged.numel() < k:
            raise ValueError(f"asked for {k} picks but only {merged.numel()} candidates remain")
        return merged

    def random_picks(self, count: int, exclude: torch.Tensor, step: int) -> torch.Tensor:
        generator = selection.step_generator(self.seed, step)
        return selection.random_picks(self.num_points, count, exclude, generator)

    def exchange_targets(
        self, part: torch.Tensor, bounds: list[tuple[int, int]], selected: torch.Tensor
    ) -> torch.Tensor:
        """Stored values of this worker's ``part`` of the ascending ``selected`` indices, fetched
        from their owners with one all-to-all. ``bounds[w]`` is worker w's [start, stop) in
        ``selected``. Collective. Returns [len(part), C] in the stored dtype."""
        rank, world = self.comm.rank, self.comm.world_size
        lo, hi = self.starts[rank], self.starts[rank + 1]
        send_rows, send_counts, recv_counts = [], [], []
        for dest in range(world):
            chunk = selected[bounds[dest][0] : bounds[dest][1]]
            mine = chunk[(chunk >= lo) & (chunk < hi)]
            send_rows.append(mine - lo)
            send_counts.append(int(mine.numel()))
        for src in range(world):
            s_lo, s_hi = self.starts[src], self.starts[src + 1]
            recv_counts.append(int(((part >= s_lo) & (part < s_hi)).sum()))
        rows = torch.cat(send_rows).to(self.shard.device)
        received = self.comm.all_to_all(self.shard.values[rows], send_counts, recv_counts)
        return received
