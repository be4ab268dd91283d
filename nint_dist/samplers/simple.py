"""Full batch and uniform sampling: the two baselines every strategy is measured against."""

from nint_dist.samplers.base import Sampler, ScheduledSampler, Selection, SelectionContext


class FullBatch(Sampler):
    """Every coordinate, every step."""

    def select(self, ctx: SelectionContext, step: int) -> Selection:
        return Selection.from_parts(all=ctx.arange())


class Uniform(ScheduledSampler):
    """A fresh uniform subset of size floor(r_t · N) without replacement at every re-selection."""

    def draw(self, ctx: SelectionContext, step: int, count: int) -> Selection:
        return Selection.from_parts(random=ctx.random_picks(count, ctx.arange()[:0], step))
