"""``nint``: NINT's selection rule at a fraction of the reference sampler's cost.

The reference sampler (``nint-paper``) ranks residuals with a forward pass over all N
coordinates at every step; for large N that pass costs more than the training step itself.
This sampler keeps the rule — NTK top-k early, the top residuals among the rest, uniform picks
for the remainder — and ranks the residual part over a fresh uniform *pool* of about
``pool_factor · k`` coordinates instead of all N (optionally in float16 on GPUs:
``score_precision=half``; ranking all N that way cost 2 dB late in training, BENCHMARKS.md).

Why a fresh pool and not cached residuals: residual ranks change fast. A cache kept current
for free (every trained sample's residual from the training forward pass) or re-measured
every few steps, used either as a hard set or as sampling weights, lost to plain uniform
sampling (BENCHMARKS.md, "Levers measured on the CPU that did not pay"); the same was seen
for a hard set refreshed every m steps (design §8). A pool measured at the current parameters
keeps the ranking exact for the candidates it holds, and its cost is set by the batch size,
not by N.

The pool is a Bernoulli draw per coordinate from a hash of (seed, step, global index), so each
worker draws its own part of the same pool and the selection does not depend on the worker
count.
"""

import torch

from nint_dist.samplers.base import SelectionContext
from nint_dist.samplers.nint_paper import NintPaper
from nint_dist.selection import index_uniforms

_POOL_SALT = 0x5EED


class Nint(NintPaper):
    def residual_candidates(
        self, ctx: SelectionContext, step: int
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        half = self.cfg.score_precision == "half"
        if self.cfg.pool_factor <= 0:
            return ctx.residual_l1(half=half), None
        indices = ctx.local_indices()
        pool_share = min(1.0, self.cfg.pool_factor * self.cfg.ratio)
        rows = (index_uniforms(ctx.seed, step, _POOL_SALT, indices) < pool_share).nonzero().squeeze(1)
        return ctx.residual_l1_at(rows, half=half), indices[rows]
