"""The training step's data movement: which worker trains on which part of a selection, and
the one all-to-all that brings each worker the stored values of its part.

Selection planning (scores, top-k, random picks) lives in ``shard.ShardContext``; this module
only moves what was selected. Every worker trains on a contiguous, balanced slice of the
ascending selection (``split``); the owners of those rows send them (``route`` plans it,
``targets`` runs it), and per-sample values of every part can be gathered back in selection
order (``gather``, for samplers that observe the training residuals).
"""

from dataclasses import dataclass

import torch

from nint_dist.comm import Comm
from nint_dist.selection import balanced_bounds
from nint_dist.shard import Shard


@dataclass
class Route:
    """The all-to-all plan of one step (see ``Exchange.route``)."""

    local_rows: torch.Tensor
    """Rows of this worker's shard that it sends, grouped by destination rank [sum(send_counts)]."""
    send_counts: list[int]
    recv_counts: list[int]


@dataclass
class Part:
    """This worker's slice of one step's selection."""

    indices: torch.Tensor
    """Ascending global indices this worker trains on."""
    weights: torch.Tensor | None
    """Their loss weights (None: uniform)."""
    bounds: list[tuple[int, int]]
    """Every worker's [start, stop) in the selection."""


class Exchange:
    """Moves the selected samples between the workers that own them and the workers that train
    on them. ``rows`` are the [start, stop) rows of the signal's first axis each worker owns."""

    def __init__(self, shard: Shard, comm: Comm, rows: list[tuple[int, int]] | tuple[tuple[int, int], ...]):
        self.shard, self.comm = shard, comm
        per_row = shard.spec.points_per_row
        self.starts = [lo * per_row for lo, _ in rows] + [rows[-1][1] * per_row]
        """Global flat index where each worker's shard begins, and the end of the last."""

    def split(self, indices: torch.Tensor, weights: torch.Tensor | None) -> Part:
        """This worker's balanced slice of the ascending selection ``indices``."""
        world, rank = self.comm.world_size, self.comm.rank
        bounds = [balanced_bounds(indices.numel(), world, r) for r in range(world)]
        lo, hi = bounds[rank]
        return Part(indices[lo:hi], None if weights is None else weights[lo:hi], bounds)

    def route(self, part: Part, selected: torch.Tensor) -> Route:
        """Who sends which of its rows to whom, for this worker's ``part`` of the ascending
        ``selected`` indices."""
        rank, world = self.comm.rank, self.comm.world_size
        lo, hi = self.starts[rank], self.starts[rank + 1]
        mine = part.indices
        if world == 1:
            return Route(mine - lo, [mine.numel()], [mine.numel()])
        send_rows, send_counts, recv_counts = [], [], []
        for dest in range(world):
            wanted = selected[part.bounds[dest][0] : part.bounds[dest][1]]
            owned = wanted[(wanted >= lo) & (wanted < hi)]
            send_rows.append(owned - lo)
            send_counts.append(int(owned.numel()))
        for src in range(world):
            s_lo, s_hi = self.starts[src], self.starts[src + 1]
            recv_counts.append(int(((mine >= s_lo) & (mine < s_hi)).sum()))
        return Route(torch.cat(send_rows), send_counts, recv_counts)

    def targets(self, route: Route) -> torch.Tensor:
        """Stored values [len(part), C] of this worker's part, fetched from their owners with one
        all-to-all (in part order, since parts and shards are both ascending). Collective."""
        return self.comm.all_to_all(self.shard.values[route.local_rows], route.send_counts, route.recv_counts)

    def gather(self, part_values: torch.Tensor, bounds: list[tuple[int, int]]) -> torch.Tensor:
        """Per-sample values of every worker's part of a selection, joined in selection order:
        [k], the same on every worker. Collective."""
        return gather_parts(self.comm, part_values, bounds)


def gather_parts(comm: Comm, part_values: torch.Tensor, bounds: list[tuple[int, int]]) -> torch.Tensor:
    """Per-sample values of every worker's part of a selection, joined in selection order
    (``bounds[w]`` is worker w's [start, stop)): [k], the same on every worker. Collective."""
    if not comm.distributed:
        return part_values
    longest = max(hi - lo for lo, hi in bounds)
    gathered = comm.all_gather_padded(part_values, longest, 0.0)
    return torch.cat([gathered[w, : hi - lo] for w, (lo, hi) in enumerate(bounds)])
