"""Full batch and uniform sampling, the baselines every strategy is measured against, and
uniform sampling in epochs."""

import torch

from nint_dist.samplers.base import Sampler, ScheduledSampler, Selection, SelectionContext
from nint_dist.samplers.stream import EpochStream

SALT_SHUFFLED = 0x5F1E


class FullBatch(Sampler):
    """Every coordinate, every step."""

    def select(self, ctx: SelectionContext, step: int) -> Selection:
        return Selection.from_parts(all=ctx.arange())


class Uniform(ScheduledSampler):
    """A fresh uniform subset of size floor(r_t · N) without replacement at every re-selection."""

    def draw(self, ctx: SelectionContext, step: int, count: int) -> Selection:
        nothing = torch.empty(0, dtype=torch.int64, device=ctx.device)
        return Selection.from_parts(random=ctx.random_picks(count, nothing, step))


class Shuffled(ScheduledSampler):
    """Uniform sampling without replacement across steps: the next coordinates of an epoch
    that visits each one once (``EpochStream``), as shuffled epochs do in deep learning."""

    def __init__(self, cfg, common):
        super().__init__(cfg, common)
        self.stream = EpochStream(SALT_SHUFFLED)

    def draw(self, ctx: SelectionContext, step: int, count: int) -> Selection:
        return Selection.from_parts(random=self.stream.take(ctx.num_points, count, ctx.seed, ctx.device))

    def state_dict(self) -> dict:
        return {**super().state_dict(), "consumed": self.stream.consumed}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.stream.consumed = int(state["consumed"])
