"""``nint``: NINT's selection rule at a fraction of the reference sampler's cost.

The reference sampler (``nint-paper``) scores all N coordinates at every re-selection; for
large N that pass costs more than the training step itself. This sampler keeps the rule — NTK
top-k early, the top residuals among the rest, uniform picks for the remainder — and scores a
fresh uniform *pool* of ``pool_factor · k`` coordinates instead of all N, so the cost of a step
is set by the batch and not by the signal (TF32 or float16 residual ranking on GPUs is an
option, ``score_precision``; ranking all N in float16 cost 2 dB late in training, BENCHMARKS.md).

One distinct random draw of ``pool + k`` global indices feeds both parts: its first
``pool_factor · k`` entries are the pool (NTK scores — with v = Jᵀr estimated on the pool — and
residuals are ranked there), the entries after them supply the uniform picks. Those picks are
therefore uniform over the coordinates outside the pool, a set chosen independently of the
residuals, and no rejection loop is needed. Everything stays on the device: a step queues its
selection behind the previous step's training without waiting for it.

Why a fresh pool and not cached residuals: residual ranks change fast. A cache kept current
for free (every trained sample's residual from the training forward pass) or re-measured
every few steps, used either as a hard set or as sampling weights, lost to plain uniform
sampling (BENCHMARKS.md, "Levers measured on the CPU that did not pay"); the same was seen
for a hard set refreshed every m steps. A pool measured at the current parameters keeps the
ranking exact for the candidates it holds.

Above ``ntk_max_points`` coordinates the NTK share is skipped: its scores need a
vector-Jacobian and a Jacobian-vector product over the pool, which on a hash grid cost several
training steps each (a 2048×1280 photograph on a CPU: a `nint` step 4.6× a uniform one), while
the NTK phase covers the first ~50 re-selections only, and on a large signal at a small ratio
those see a few per cent of it. The residual ranking of the pool is what pays there
(BENCHMARKS.md, "Large signals and other modalities on the CPU").

The draw comes from the (seed, step) generator that every worker evaluates identically, and
each worker scores the pool entries it owns, so the selection does not depend on the worker
count. When the pool and the picks would not fit in N (ratio above 1 / (pool_factor + 1)), or
with ``pool_factor=0``, the pool is the whole signal and the sampler ranks all N as
``nint-paper`` does.
"""

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from nint_dist.samplers.base import Selection, SelectionContext
from nint_dist.samplers.nint_paper import NintPaper, NintPaperConfig
from nint_dist.selection import first_rows, isin_sorted


@dataclass
class NintConfig(NintPaperConfig):
    """``sampler.nint``: the NTK schedule and shares of ``nint-paper`` (its own copy), and the pool."""

    KEY: ClassVar[str] = "sampler.nint"

    pool_factor: float = 3.0
    """Residuals are ranked over a fresh uniform pool of about pool_factor·k coordinates per
    re-selection (k = the batch size); 0 ranks all N, as nint-paper does."""
    ntk_max_points: int = 1_000_000
    """Signals with more coordinates than this skip the NTK share (the pool's residual ranking
    only): there the NTK scores cost several training steps and help a few early ones."""
    score_precision: str = "full"
    """Precision of the residual ranking on GPUs (training keeps its own): 'full' (the training
    dtype), 'tf32' (TensorFloat-32 matrix products) or 'half' (float16 autocast); ignored on
    CPUs."""

    def __post_init__(self):
        super().__post_init__()
        if self.pool_factor < 0 or self.score_precision not in ("full", "tf32", "half"):
            raise ValueError(
                f"{self.KEY}.pool_factor must be >= 0 and {self.KEY}.score_precision full, tf32 or half"
            )


class Nint(NintPaper):
    def draw(self, ctx: SelectionContext, step: int, count: int) -> Selection:
        pool_size = math.ceil(self.cfg.pool_factor * count)
        if pool_size <= 0 or pool_size + count > ctx.num_points:
            return super().draw(ctx, step, count)
        draw = ctx.distinct_draw(pool_size + count, step)
        pool = torch.sort(draw[:pool_size]).values
        rows, candidates = ctx.local_part(pool)

        def top(scores: torch.Tensor, num: int, exclude: torch.Tensor | None = None) -> torch.Tensor:
            return ctx.global_topk(scores, num, exclude, indices=candidates, num_candidates=pool_size)

        if ctx.num_points > self.cfg.ntk_max_points:  # large signals: residual ranking only
            ntk = pool[:0]
        else:
            ntk = self.ntk_part(count, lambda num: top(self.ntk_ranking(ctx, rows), num))
        residuals = ctx.residual_l1_at(rows, self.cfg.score_precision)
        residual = top(residuals, self.num_residual(count, ntk), ntk)
        num_random = count - ntk.numel() - residual.numel()
        rest = draw[pool_size:]  # `count` entries outside the pool; at most |ntk| of them taken
        if ntk.numel():
            rest = rest[first_rows(~isin_sorted(rest, torch.sort(ntk).values), num_random)]
        return Selection.from_parts(ntk=ntk, residual=residual, random=rest[:num_random])

    def residual_scores(self, ctx: SelectionContext) -> torch.Tensor:
        return ctx.residual_l1(self.cfg.score_precision)
