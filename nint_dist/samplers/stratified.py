"""``stratified``: jittered-grid sampling, uniform sampling with less variance.

The flat index range [0, N) is cut into k strata of floor or ceil N / k consecutive indices
(stratum j is [⌊jN/k⌋, ⌊(j+1)N/k⌋)) and one index is drawn in each, so every part of the
signal is trained on in proportion to its size at every step, never by chance several times
over in one place and not at all in another, as a uniform draw may. For row-major grids a
stratum is a run of consecutive grid points along the last axis. ``jitter`` sets how far a
pick may stray from its stratum's centre: 1 (the default) anywhere in the stratum, 0 the
centre itself (a regular grid, the same at every step).

Exact for any worker count: stratum j's position is a hash of (seed, step, j), which every
worker computes identically; no communication.
"""

from dataclasses import dataclass

import torch

from nint_dist.samplers.base import ScheduledSampler, Selection, SelectionContext
from nint_dist.selection import index_uniforms

SALT_STRATUM = 0x57A7


@dataclass
class StratifiedConfig:
    """``sampler.stratified``: how far picks stray from their stratum's centre."""

    jitter: float = 1.0
    """Share of its stratum a pick may fall in, centred: 1 anywhere in it (jittered grid), 0
    the centre only (a fixed regular grid)."""

    def __post_init__(self):
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"sampler.stratified.jitter must be in [0, 1], not {self.jitter}")


def stratified_picks(num_points: int, count: int, uniforms: torch.Tensor, jitter: float) -> torch.Tensor:
    """One index per stratum of [0, N) cut into ``count`` strata, at relative position
    0.5 + jitter · (u − 0.5) inside stratum j for ``uniforms`` u [count] in (0, 1). Returns
    ascending int64 [count] on the uniforms' device."""
    strata = torch.arange(count + 1, dtype=torch.int64, device=uniforms.device)
    bounds = strata * num_points // count
    start, size = bounds[:-1], bounds[1:] - bounds[:-1]
    offset = ((0.5 + jitter * (uniforms - 0.5)) * size).long()
    return start + torch.minimum(offset, size - 1)


class Stratified(ScheduledSampler):
    def __init__(self, cfg: StratifiedConfig, common):
        super().__init__(cfg, common)
        self.device: torch.device | None = None

    def draw(self, ctx: SelectionContext, step: int, count: int) -> Selection:
        if self.device is None:
            self.device = ctx.device
        strata = torch.arange(count, dtype=torch.int64, device=self.device)
        uniforms = index_uniforms(ctx.seed, step, SALT_STRATUM, strata)
        return Selection.from_parts(strata=stratified_picks(ctx.num_points, count, uniforms, self.cfg.jitter))
