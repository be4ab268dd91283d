"""Full batch and uniform sampling: the two baselines every strategy is measured against."""

from nint_dist.samplers.base import Sampler, Selection, SelectionContext
from nint_dist.schedules import num_selected, ratio_at, reselect_at


class FullBatch(Sampler):
    """Every coordinate, every step."""

    def select(self, ctx: SelectionContext, step: int) -> Selection:
        return Selection.from_parts(all=ctx.arange())


class Uniform(Sampler):
    """A fresh uniform subset of size floor(r_t · N) without replacement at every re-selection."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.last: Selection | None = None

    def select(self, ctx: SelectionContext, step: int) -> Selection:
        if self.last is not None and not reselect_at(self.cfg.interval, step, ctx.total_steps):
            return self.last
        ratio = ratio_at(self.cfg.ratio_schedule, self.cfg.ratio, step, ctx.total_steps)
        count = num_selected(ratio, ctx.num_points)
        self.last = Selection.from_parts(random=ctx.random_picks(count, ctx.arange()[:0], step))
        return self.last

    def state_dict(self) -> dict:
        return {"last": None if self.last is None else self.last.indices}

    def load_state_dict(self, state: dict) -> None:
        self.last = None if state.get("last") is None else Selection(state["last"])
