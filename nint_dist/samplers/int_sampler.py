"""``int``: Implicit Neural Teaching (Zhang et al., ICML 2024) — the error top-k baseline.

At every refresh (``sampler.interval``: dense, dense2, incremental — INT's default — or
decremental) the k = floor(r_t · N) coordinates with the largest Σ_c |f(x) − y| are kept, by
the exact global top-k; between refreshes the same indices (and so the same size) are reused,
so a growing ratio only takes effect at the next refresh, as in INT's code. No random share,
no loss weights.
"""

from nint_dist.samplers.base import ScheduledSampler, Selection, SelectionContext


class ErrorTopK(ScheduledSampler):
    def draw(self, ctx: SelectionContext, step: int, count: int) -> Selection:
        return Selection.from_parts(residual=ctx.global_topk(ctx.residual_l1(), count))
