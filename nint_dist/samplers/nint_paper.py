"""``nint-paper``: NINT exactly as the reference code runs it (``docs/method.md``, "nint-paper").

Per re-selection (call counter c, starting at 1):
- at c = 1 and whenever c % period == 0 the NTK share is recomputed; with the reference
  code's operator precedence it is ``ntk_share · exp(floor(−decay · c / period))``
  (``ntk_share_rule="code"``; ``"paper"`` gives ``ntk_share · exp(−decay · c / period)``).
  If the share is at least ``ntk_cutoff`` the NTK scores are recomputed and the top
  int(n · share) kept; below it scoring stops and the first int(n · share) cached picks remain;
- between refreshes the cached NTK picks are reused unchanged;
- residual part: top int(n · (1 − share_ntk − random_share)) of Σ_c |r| among the rest;
- random part: the remainder, uniform among the rest.
"""

import math
from collections.abc import Callable

import torch

from nint_dist.samplers.base import ScheduledSampler, Selection, SelectionContext


def ntk_share_at(call: int, cfg) -> float:
    """NTK share at re-selection number ``call`` (from 1)."""
    if cfg.ntk_share_rule == "code":
        exponent = math.floor(-cfg.ntk_decay * call / cfg.ntk_period)  # Python's (-λ·c) // α
    else:
        exponent = -cfg.ntk_decay * call / cfg.ntk_period
    return cfg.ntk_share * math.exp(exponent)


class NintPaper(ScheduledSampler):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.calls = 0
        self.ntk_share = 0.0
        self.ntk_cache = torch.empty(0, dtype=torch.int64)

    def draw(self, ctx: SelectionContext, step: int, count: int) -> Selection:
        ntk = self.ntk_part(count, lambda num: ctx.global_topk(ctx.ntk_scores(), num))
        residual = ctx.global_topk(self.residual_scores(ctx), self.num_residual(count, ntk), exclude=ntk)
        taken = torch.cat([ntk, residual])
        random = ctx.random_picks(count - taken.numel(), taken, step)
        return Selection.from_parts(ntk=ntk, residual=residual, random=random)

    def ntk_part(self, count: int, top_ntk: Callable[[int], torch.Tensor]) -> torch.Tensor:
        """This re-selection's NTK picks: ``top_ntk(num)`` at a refresh, else the cached ones."""
        cfg = self.cfg
        self.calls += 1
        if self.calls == 1 or self.calls % cfg.ntk_period == 0:
            self.ntk_share = ntk_share_at(self.calls, cfg)
            num_ntk = int(count * self.ntk_share)
            if self.ntk_share >= cfg.ntk_cutoff:
                self.ntk_cache = top_ntk(num_ntk)
            else:
                self.ntk_cache = self.ntk_cache[:num_ntk]
        return self.ntk_cache[:count]

    def num_residual(self, count: int, ntk: torch.Tensor) -> int:
        residual_share = max(0.0, 1.0 - self.ntk_share - self.cfg.random_share)
        return min(int(count * residual_share), count - ntk.numel())

    def residual_scores(self, ctx: SelectionContext) -> torch.Tensor:
        """Σ_c |r| over this worker's shard: a fresh forward pass, as the reference code makes at
        every re-selection."""
        return ctx.residual_l1()

    def state_dict(self) -> dict:
        return {
            **super().state_dict(),
            "calls": self.calls,
            "ntk_share": self.ntk_share,
            "ntk_cache": self.ntk_cache,
        }

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.calls = int(state["calls"])
        self.ntk_share = float(state["ntk_share"])
        self.ntk_cache = state["ntk_cache"]
