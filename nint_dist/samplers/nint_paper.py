"""``nint-paper``: NINT exactly as the reference code runs it (``docs/method.md``, "nint-paper").

Per re-selection (call counter c, starting at 1):
- at c = 1 and whenever c % period == 0 the NTK share is recomputed; with the reference
  code's operator precedence it is ``ntk_share · exp(floor(−decay · c / period))``
  (``share_rule="code"``; ``"paper"`` gives ``ntk_share · exp(−decay · c / period)``).
  If the share is at least ``ntk_cutoff`` the NTK scores are recomputed and the top
  int(n · share) kept; below it scoring stops and the first int(n · share) cached picks remain;
- between refreshes the cached NTK picks are reused unchanged;
- residual part: top int(n · (1 − share_ntk − random_share)) of Σ_c |r| among the rest;
- random part: the remainder, uniform among the rest.

What the NTK share ranks is ``ntk_score``: ``paper`` (the default) ranks ‖(J Jᵀ r)_i‖², the
paper's equation; ``reference-code`` ranks ‖f(x_i)‖², which is what the authors' code computes
(``w_flat, _ = jvp(...)`` keeps the primal output f(x), not the tangent J v) and what produced
the paper's tables. With ``reference-code`` the NTK and residual sets match the reference
code's own choices step for step (tests/test_reference_code.py).
"""

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch

from nint_dist.samplers.base import ScheduledSampler, Selection, SelectionContext

NTK_SCORES = ("paper", "reference-code")


@dataclass
class NintPaperConfig:
    """``sampler.nint_paper``: the reference sampler's NTK schedule and shares."""

    KEY: ClassVar[str] = "sampler.nint_paper"

    random_share: float = 0.7
    """Share of uniform random picks."""
    ntk_share: float = 0.3
    """Initial NTK share before decay."""
    ntk_decay: float = 1.0
    """Decay rate lambda of the NTK share."""
    ntk_period: int = 10
    """Re-selections between NTK refreshes (alpha)."""
    ntk_cutoff: float = 1e-3
    """NTK scoring stops for good once the share falls below this."""
    share_rule: str = "code"
    """How the NTK share decays: 'code' (the reference code's floor-division precedence) or
    'paper'."""
    ntk_score: str = "paper"
    """What the NTK share ranks. 'paper': ‖(J Jᵀ r)_i‖², the paper's rule; 'reference-code':
    ‖f(x_i)‖², what the authors' code computes (it keeps the primal output of its JVP) and what
    produced the paper's tables."""

    def __post_init__(self):
        key = self.KEY
        if self.ntk_period < 1:
            raise ValueError(f"{key}.ntk_period must be positive")
        if not 0.0 <= self.random_share <= 1.0 or not 0.0 <= self.ntk_share <= 1.0:
            raise ValueError(f"{key}.random_share and {key}.ntk_share must be in [0, 1]")
        if self.share_rule not in ("code", "paper"):
            raise ValueError(f"{key}.share_rule must be 'code' or 'paper'")
        if self.ntk_score not in NTK_SCORES:
            raise ValueError(f"{key}.ntk_score must be one of {NTK_SCORES}, not {self.ntk_score!r}")


def ntk_share_at(call: int, cfg: NintPaperConfig) -> float:
    """NTK share at re-selection number ``call`` (from 1)."""
    if cfg.share_rule == "code":
        exponent = math.floor(-cfg.ntk_decay * call / cfg.ntk_period)  # Python's (-λ·c) // α
    else:
        exponent = -cfg.ntk_decay * call / cfg.ntk_period
    return cfg.ntk_share * math.exp(exponent)


NTK_RANKINGS: dict[str, Callable[[SelectionContext, torch.Tensor | None, str], torch.Tensor]] = {
    "paper": lambda ctx, rows, prec: ctx.ntk_scores() if rows is None else ctx.ntk_scores_at(rows, prec),
    "reference-code": lambda ctx, rows, prec: ctx.output_sq_norms(rows, prec),
}
"""``ntk_score`` → local scores of the whole shard (rows None, full precision) or of some of its
rows (in the given ``scoring.PRECISIONS``). ``paper`` is collective (v = Jᵀr is summed over
workers); ``reference-code`` is local."""


class NintPaper(ScheduledSampler):
    def __init__(self, cfg: NintPaperConfig, common):
        super().__init__(cfg, common)
        self.calls = 0
        self.ntk_share = 0.0
        self.ntk_cache = torch.empty(0, dtype=torch.int64)

    def draw(self, ctx: SelectionContext, step: int, count: int) -> Selection:
        ntk = self.ntk_part(count, lambda num: ctx.global_topk(self.ntk_ranking(ctx), num))
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

    def ntk_ranking(
        self, ctx: SelectionContext, rows: torch.Tensor | None = None, precision: str = "full"
    ) -> torch.Tensor:
        """The NTK share's local scores under ``ntk_score``. Collective for ``paper``."""
        return NTK_RANKINGS[self.cfg.ntk_score](ctx, rows, precision)

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
