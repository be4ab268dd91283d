"""A worker's shard of the signal and the selection context built on it.

The shard holds the stored values of a contiguous, chunk-aligned block of rows on the
worker's device, in the stored dtype; coordinates and [0, 1] targets are made per forward pass.
``ShardContext`` implements the samplers' ``SelectionContext`` with exact collectives: one
all-reduce of v for NTK scores, an all-gather of local top-k lists merged canonically, and
random picks from a (seed, step) generator that every worker evaluates identically. It plans
selections only; moving the selected samples to the workers that train on them is
``training.exchange``'s job.
"""

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from nint_dist import scoring, selection
from nint_dist.comm import Comm
from nint_dist.signal import (
    SignalSpec,
    flat_to_coords,
    shard_rows,
    to_unit,
    verifiable_checksums,
)
from nint_dist.steptimer import PhaseTimer


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
        return torch.arange(self.start, self.start + self.size, device=self.device)


def load_shard(
    array,
    spec: SignalSpec,
    world_size: int,
    rank: int,
    device: torch.device,
    dtype: torch.dtype,
    verify: bool | str = True,
) -> Shard:
    """Worker ``rank``'s shard of an even split over ``world_size`` workers (``load_rows``)."""
    return load_rows(array, spec, shard_rows(spec, world_size, rank), device, dtype, verify)


def load_rows(
    array,
    spec: SignalSpec,
    rows: tuple[int, int],
    device: torch.device,
    dtype: torch.dtype,
    verify: bool | str = True,
) -> Shard:
    """Read only the [start, stop) ``rows`` of the signal's first axis (whole chunk rows, as the
    run plan assigns them) from the zarr array, one chunk row at a time into a tensor allocated
    on the device, so host memory holds one chunk on top of the shard, not a copy. With
    ``verify``, each chunk row read is checked against the CRC32 recorded at ingestion; a store
    without usable checksums is read unchecked (the driver has said so once), or refused when
    ``verify`` is 'strict'."""
    row_lo, row_hi = rows
    checksums = None
    if verify:
        checksums = verifiable_checksums(array, spec, strict=verify == "strict")
    per_row = spec.points_per_row
    values = torch.empty(
        ((row_hi - row_lo) * per_row, spec.channels),
        dtype=torch.from_numpy(np.empty(0, array.dtype)).dtype,
        device=device,
    )
    for lo in range(row_lo, row_hi, spec.chunk_rows):
        hi = min(lo + spec.chunk_rows, row_hi)
        block = np.ascontiguousarray(array[lo:hi])
        if checksums is not None and zlib.crc32(block) != checksums["values"][lo // spec.chunk_rows]:
            raise ValueError(
                f"chunk row {lo // spec.chunk_rows} (rows {lo}-{hi - 1}) of the signal store does not match"
                " its checksum: the store is corrupt; ingest it again (data.verify=false skips the check)"
            )
        values[(lo - row_lo) * per_row : (hi - row_lo) * per_row] = torch.from_numpy(
            block.reshape(-1, spec.channels)
        )
    return Shard(spec, row_lo * per_row, values, dtype)


class ShardContext:
    """SelectionContext over one shard; collective methods use ``comm``."""

    def __init__(
        self,
        model: nn.Module,
        shard: Shard,
        comm: Comm,
        pass_size: int,
        seed: int,
        total_steps: int,
        timer: PhaseTimer | None = None,
    ):
        self.model = model
        self.shard = shard
        self.comm = comm
        self.pass_size = pass_size
        """Coordinates per forward pass of the scoring passes."""
        self.seed = seed
        self.total_steps = total_steps
        self.num_points = shard.spec.num_points
        self.device = shard.device
        self.timer = timer or PhaseTimer(shard.device)
        """Scoring passes are marked "score"; the rest of a sampler's time is "select"."""
        self.last_scores: dict[str, torch.Tensor] = {}
        """The latest local scores of each kind, for TensorBoard histograms."""
        self.nonfinite_scores = torch.zeros((), dtype=torch.bool, device=shard.device)
        """Set (on the device, no host read) when a scoring pass returns NaN or inf."""

    def _timed(self, name: str, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        self.timer.lap("select")
        scores = compute()
        self.timer.lap("score")
        self.last_scores[name] = scores
        if scores is not None:  # None: a graphed pass that could not run (the caller falls back)
            self.nonfinite_scores |= ~torch.isfinite(scores).all()
        return scores

    def residual_l1(self, precision: str = "full") -> torch.Tensor:
        s, pass_size = self.shard, self.pass_size
        return self._timed(
            "residual",
            lambda: scoring.residual_l1(self.model, s.coords, s.targets, s.size, pass_size, precision),
        )

    def _rows_fns(self, rows: torch.Tensor):
        """Coordinate and target functions over some rows of the shard, for the scoring passes."""
        s = self.shard
        flat = rows + s.start
        return (
            lambda lo, hi: flat_to_coords(flat[lo:hi], s.spec, s.dtype),
            lambda lo, hi: to_unit(s.values[rows[lo:hi]], s.spec, s.dtype),
        )

    def residual_l1_at(self, rows: torch.Tensor, precision: str = "full") -> torch.Tensor:
        """Σ_c |r| at some rows of this worker's shard, [len(rows)] (no communication)."""
        coords_of, targets_of = self._rows_fns(rows)
        n, pass_size = rows.numel(), self.pass_size
        return self._timed(
            "residual_pool",
            lambda: scoring.residual_l1(self.model, coords_of, targets_of, n, pass_size, precision),
        )

    def local_part(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The entries of ascending global ``indices`` that this worker owns: (rows of its shard,
        global indices). One worker owns them all (no host synchronisation)."""
        if not self.comm.distributed:
            return indices - self.shard.start, indices
        lo, hi = self.local_range()
        bounds = torch.tensor([lo, hi], dtype=indices.dtype, device=indices.device)
        first, stop = torch.searchsorted(indices, bounds).tolist()
        return indices[first:stop] - lo, indices[first:stop]

    def distinct_draw(self, count: int, step: int) -> torch.Tensor:
        """``count`` distinct global indices in random order from the (seed, step) generator,
        the same on every worker."""
        generator = selection.step_generator(self.seed, step, self.shard.device)
        return selection.distinct_draw(self.num_points, count, generator)

    def ntk_scores(self) -> torch.Tensor:
        s = self.shard
        return self._timed("ntk", lambda: self._ntk(s.coords, s.targets, s.size))

    def ranking_precision(self, setting: str) -> str:
        """``setting`` of a sampler's ``score_precision``, 'auto' resolved for this model and device."""
        return scoring.ranking_precision(setting, self.device, self.model)

    def ntk_scores_at(self, rows: torch.Tensor, precision: str = "full") -> torch.Tensor:
        """NTK scores of some rows of each worker, with v = Jᵀr summed over those rows of every
        worker (a pool's estimate of the global v, up to a scale the ranking ignores). Collective."""
        coords_of, targets_of = self._rows_fns(rows)
        return self._timed("ntk_pool", lambda: self._ntk(coords_of, targets_of, rows.numel(), precision))

    def output_sq_norms(self, rows: torch.Tensor | None = None, precision: str = "full") -> torch.Tensor:
        """Σ_c f(x)² over this worker's shard, or some rows of it (no communication)."""
        if rows is None:
            coords_of, n = self.shard.coords, self.shard.size
        else:
            coords_of, n = self._rows_fns(rows)[0], rows.numel()
        return self._timed(
            "ntk", lambda: scoring.output_sq_norm(self.model, coords_of, n, self.pass_size, precision)
        )

    def _ntk(self, coords_of, targets_of, n: int, precision: str = "full") -> torch.Tensor:
        v = scoring.residual_vjp(self.model, coords_of, targets_of, n, self.pass_size, precision)
        self.comm.all_reduce_sum_(list(v.values()))
        return scoring.ntk_scores(self.model, v, coords_of, n, self.pass_size, precision)

    def arange(self) -> torch.Tensor:
        return torch.arange(self.num_points, device=self.shard.device)

    def global_topk(
        self,
        local_scores: torch.Tensor,
        k: int,
        exclude: torch.Tensor | None = None,
        indices: torch.Tensor | None = None,
        num_candidates: int | None = None,
    ) -> torch.Tensor:
        """Exact global top-k in canonical order: local top-k, all-gathered, merged. Collective.

        ``local_scores`` score this worker's whole shard, or the candidates with ascending global
        ``indices`` (a pool: then every step of the ranking is the pool's size), of which all
        workers hold ``num_candidates`` together. Excluded candidates score −inf. Nothing is read
        back to the host unless the candidates might be too few for k (then one check)."""
        scores = local_scores.detach()
        if indices is None:
            indices, num_candidates = self.shard.global_indices(), self.num_points
        num_excluded = 0 if exclude is None else exclude.numel()
        if num_excluded:
            hit = selection.isin_sorted(indices, torch.sort(exclude).values)
            scores = scores.masked_fill(hit, float("-inf"))
        scores, indices = selection.topk_set(scores, indices, k)
        if self.comm.distributed:
            all_scores = self.comm.all_gather_padded(scores, k, float("-inf")).view(-1)
            # padding sorts after every real index, so a tie at −inf (NaN scores of a diverged
            # model, excluded entries) goes to a real coordinate, as it does on one worker
            all_indices = self.comm.all_gather_padded(indices, k, self.num_points).view(-1)
            by_index = torch.argsort(all_indices)  # rows are ascending and disjoint, but padded
            scores, indices = selection.topk_set(all_scores[by_index], all_indices[by_index], k)
        if num_candidates is None or num_candidates - num_excluded < k:
            if indices.numel() < k or bool((scores == float("-inf")).any()):
                raise ValueError(f"asked for {k} picks but fewer candidates remain")
        return selection.canonical_order(scores, indices)[1]

    def random_picks(self, count: int, exclude: torch.Tensor, step: int) -> torch.Tensor:
        generator = selection.step_generator(self.seed, step, self.shard.device)
        return selection.random_picks(self.num_points, count, exclude, generator)

    # Primitives of the baselines: each is exact, so a sampler built on them selects the same
    # coordinates for any worker count.

    @property
    def spec(self):
        return self.shard.spec

    def local_range(self) -> tuple[int, int]:
        return self.shard.start, self.shard.start + self.shard.size

    def local_values(self, predicted: bool) -> torch.Tensor:
        s = self.shard
        if predicted:
            return scoring.predict(self.model, s.coords, s.size, self.pass_size)
        return s.targets(0, s.size)

    def halo(self, local: torch.Tensor, before: int, after: int, wrap: bool = False):
        """Neighbouring entries from the other workers' edges: one all-gather of every worker's
        first ``after`` and last ``before`` entries (walking past a worker with fewer)."""
        row_numel = int(np.prod(local.shape[1:]))
        head, tail = local[:after], local[local.shape[0] - min(before, local.shape[0]) :]
        packed = torch.cat(
            [
                torch.tensor([head.shape[0], tail.shape[0]], dtype=torch.float64, device=local.device),
                head.reshape(-1).to(torch.float64),
                tail.reshape(-1).to(torch.float64),
            ]
        )
        gathered = self.comm.all_gather_padded(packed, 2 + (before + after) * row_numel, 0.0)
        shape = local.shape[1:]

        def rows_of(rank: int, which: str) -> torch.Tensor:
            n_head, n_tail = int(gathered[rank, 0]), int(gathered[rank, 1])
            lo = 2 if which == "head" else 2 + n_head * row_numel
            n = n_head if which == "head" else n_tail
            return gathered[rank, lo : lo + n * row_numel].reshape(n, *shape).to(local.dtype)

        rank, world = self.comm.rank, self.comm.world_size
        top, need, r = [], before, rank
        while need > 0 and (wrap or r > 0):
            r = (r - 1) % world
            rows = rows_of(r, "tail")[-need:]
            top.insert(0, rows)
            need -= rows.shape[0]
        bottom, need, r = [], after, rank
        while need > 0 and (wrap or r < world - 1):
            r = (r + 1) % world
            rows = rows_of(r, "head")[:need]
            bottom.append(rows)
            need -= rows.shape[0]
        num_top = sum(t.shape[0] for t in top)
        num_bottom = sum(b.shape[0] for b in bottom)
        return torch.cat([*top, local, *bottom]), num_top, num_bottom

    def global_sum(self, value: torch.Tensor) -> torch.Tensor:
        total = value.clone()
        self.comm.all_reduce_sum_([total])
        return total

    def global_max(self, value: float) -> float:
        return self.comm.all_reduce_max(value)

    def weighted_picks(
        self, local_weights: torch.Tensor, count: int, exclude: torch.Tensor | None, step: int, salt: int
    ) -> torch.Tensor:
        """Efraimidis–Spirakis keys from per-index uniforms, then the exact global top-k."""
        uniforms = selection.index_uniforms(self.seed, step, salt, self.shard.global_indices())
        return self.global_topk(selection.weighted_keys(local_weights, uniforms), count, exclude)

    def sample_stats(self, indices: torch.Tensor) -> torch.Tensor:
        """Each owner measures its own entries of ``indices``; one all-reduce assembles them."""
        lo, hi = self.local_range()
        indices = indices.to(self.shard.device)
        mine = ((indices >= lo) & (indices < hi)).nonzero().squeeze(1)
        rows = indices[mine] - lo
        coords = flat_to_coords(indices[mine], self.spec, self.shard.dtype)
        targets = to_unit(self.shard.values[rows], self.spec, self.shard.dtype)
        stats = scoring.point_stats(self.model, coords, targets)
        out = torch.zeros(indices.numel(), stats.shape[1], dtype=stats.dtype, device=stats.device)
        out[mine] = stats
        self.comm.all_reduce_sum_([out])
        return out
