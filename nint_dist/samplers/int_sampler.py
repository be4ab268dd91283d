"""``int``: Implicit Neural Teaching (Zhang et al., ICML 2024) — the error top-k baseline.

At every refresh (``sampler.interval``: dense, dense2, incremental — INT's default — or
decremental) the k = floor(r_t · N) coordinates with the largest Σ_c |f(x) − y| are kept, by
the exact global top-k; between refreshes the same indices (and so the same size) are reused,
so a growing ratio only takes effect at the next refresh, as in INT's code. No random share,
no loss weights.
"""

from nint_dist.samplers.base import Sampler, Selection, SelectionContext
from nint_dist.schedules import num_selected, ratio_at, reselect_at


class ErrorTopK(Sampler):
    def __init__(self, cfg):
        self.cfg = cfg
        self.last: Selection | None = None

    def select(self, ctx: SelectionContext, step: int) -> Selection:
        if self.last is not None and not reselect_at(self.cfg.interval, step, ctx.total_steps):
            return self.last
        ratio = ratio_at(self.cfg.ratio_schedule, self.cfg.ratio, step, ctx.total_steps)
        count = num_selected(ratio, ctx.num_points)
        self.last = Selection.from_parts(residual=ctx.global_topk(ctx.residual_l1(), count))
        return self.last

    def state_dict(self) -> dict:
        return {"last": None if self.last is None else self.last.indices}

    def load_state_dict(self, state: dict) -> None:
        self.last = None if state.get("last") is None else Selection(state["last"])
