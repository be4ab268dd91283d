"""``nint``: NINT's selection rule at a fraction of the reference sampler's cost.

The reference sampler (``nint-paper``) scores all N coordinates at every re-selection; for
large N that pass costs more than the training step itself. This sampler keeps the rule — NTK
top-k early, the top residuals among the rest, uniform picks for the remainder — and scores a
*pool* of ``pool_factor · k`` coordinates instead of all N, so the cost of a step
is set by the batch and not by the signal. The pool's rankings may run in reduced precision
(``score_precision``): by default bfloat16 for the dense models (SIREN, Fourier features) on
CPUs that multiply it in hardware, where their pool pass runs about 3× faster and the top sets
stay (BENCHMARKS.md); the training dtype elsewhere (a hash grid's pass gains nothing; on GPUs,
ranking all N in float16 cost 2 dB late in training).

The next ``pool_factor · k + k`` coordinates of the epoch order (``order=epochs``: every
coordinate once per epoch, in a fresh random order each epoch; ``independent``: one distinct
random draw per re-selection) feed both parts: the first ``pool_factor · k`` are the pool (NTK
scores — with v = Jᵀr estimated on the pool — and residuals are ranked there), the ones after
them supply the uniform picks. Those picks are therefore uniform over coordinates outside the
pool, chosen independently of the residuals, and no rejection loop is needed. In epochs, a
coordinate looked at once (trained, or passed over in a pool) is not looked at again before
the rest of the signal has been: on large signals at small ratios, where a step sees 1–2% of
the coordinates, that coverage is worth more than the ranking (BENCHMARKS.md). Everything stays
on the device: a step queues its selection behind the previous step's training.

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

The order is a function of (seed, epoch), the draw of the (seed, step) generator, both
evaluated identically by every worker, and each worker scores the pool entries it owns, so
the selection does not depend on the worker count. When the pool and the picks would not fit
in N (ratio above 1 / (pool_factor + 1)), or with ``pool_factor=0``, the pool is the whole
signal and the sampler ranks all N as ``nint-paper`` does.
"""

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from nint_dist.samplers.base import Selection, SelectionContext
from nint_dist.samplers.nint_paper import NintPaper, NintPaperConfig
from nint_dist.samplers.stream import EpochStream
from nint_dist.scoring import PRECISIONS
from nint_dist.selection import first_rows, isin_sorted

ORDERS = ("epochs", "independent")
SALT_EPOCHS = 0x1E70


@dataclass
class NintConfig(NintPaperConfig):
    """``sampler.nint``: the NTK schedule and shares of ``nint-paper`` (its own copy), and the pool."""

    KEY: ClassVar[str] = "sampler.nint"

    pool_factor: float = 1.0
    """Residuals are ranked over a pool of about pool_factor·k coordinates per re-selection
    (k = the batch size); 0 ranks all N, as nint-paper does. A larger pool ranks better per
    step but its forward pass costs more: at equal seconds on CPUs 1 beat 3 (BENCHMARKS.md)."""
    ntk_max_points: int = 1_000_000
    """Signals with more coordinates than this skip the NTK share (the pool's residual ranking
    only): there the NTK scores cost several training steps and help a few early ones."""
    order: str = "epochs"
    """Where the pool and the uniform picks come from: 'epochs' (the next coordinates of an
    epoch that visits every coordinate once, in a fresh random order per epoch) or
    'independent' (a fresh random draw at every re-selection)."""
    score_precision: str = "auto"
    """Precision of the pool's residual and NTK rankings (training keeps its own): 'full' (the
    training dtype), 'tf32' (TensorFloat-32 matrix products, GPUs), 'half' (float16 autocast,
    GPUs), 'bf16' (bfloat16 autocast) or 'auto': 'bf16' for SIREN and Fourier-feature models
    on CPUs that multiply bfloat16 in hardware, 'full' elsewhere."""

    def __post_init__(self):
        super().__post_init__()
        if self.pool_factor < 0 or self.score_precision not in ("auto", *PRECISIONS):
            raise ValueError(
                f"{self.KEY}.pool_factor must be >= 0 and {self.KEY}.score_precision one of "
                f"auto, {', '.join(PRECISIONS)}"
            )
        if self.order not in ORDERS:
            raise ValueError(f"{self.KEY}.order must be one of {list(ORDERS)}, not {self.order!r}")


class Nint(NintPaper):
    def __init__(self, cfg: NintConfig, common):
        super().__init__(cfg, common)
        self.stream = EpochStream(SALT_EPOCHS)

    def draw(self, ctx: SelectionContext, step: int, count: int) -> Selection:
        pool_size = math.ceil(self.cfg.pool_factor * count)
        if pool_size <= 0 or pool_size + count > ctx.num_points:
            return super().draw(ctx, step, count)
        if self.cfg.order == "epochs":
            draw = self.stream.take(ctx.num_points, pool_size + count, ctx.seed, ctx.device)
        else:
            draw = ctx.distinct_draw(pool_size + count, step)
        pool = torch.sort(draw[:pool_size]).values
        rows, candidates = ctx.local_part(pool)
        precision = ctx.ranking_precision(self.cfg.score_precision)

        def top(scores: torch.Tensor, num: int, exclude: torch.Tensor | None = None) -> torch.Tensor:
            return ctx.global_topk(scores, num, exclude, indices=candidates, num_candidates=pool_size)

        if ctx.num_points > self.cfg.ntk_max_points:  # large signals: residual ranking only
            ntk = pool[:0]
        else:
            ntk = self.ntk_part(count, lambda num: top(self.ntk_ranking(ctx, rows, precision), num))
        residuals = ctx.residual_l1_at(rows, precision)
        residual = top(residuals, self.num_residual(count, ntk), ntk)
        num_random = count - ntk.numel() - residual.numel()
        rest = draw[pool_size:]  # `count` entries outside the pool; at most |ntk| of them taken
        if ntk.numel():
            rest = rest[first_rows(~isin_sorted(rest, torch.sort(ntk).values), num_random)]
        return Selection.from_parts(ntk=ntk, residual=residual, random=rest[:num_random])

    def residual_scores(self, ctx: SelectionContext) -> torch.Tensor:
        return ctx.residual_l1(ctx.ranking_precision(self.cfg.score_precision))

    def state_dict(self) -> dict:
        return {**super().state_dict(), "consumed": self.stream.consumed}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.stream.consumed = int(state.get("consumed", 0))
