"""The sampler interface: every strategy turns a step into a global selection using the
primitives of a ``SelectionContext``; the context hides whether there is one worker or many.

A sampler's decisions may depend only on the step, its own state and the values the context
returns (which are identical on every worker), so all workers run the same collectives and
reach the same selection.
"""

from dataclasses import dataclass, field
from typing import Protocol

import torch

from nint_dist.schedules import num_selected, ratio_at, reselect_at


@dataclass
class Selection:
    """One step's global selection: ascending global indices and how they were chosen."""

    indices: torch.Tensor
    """int64 [k], ascending, on the workers' device."""
    shares: dict[str, int] = field(default_factory=dict)
    """Number of indices contributed by each part (e.g. ntk / residual / random)."""
    weights: torch.Tensor | None = None
    """Optional per-sample loss weights [k] aligned with ``indices`` (importance-sampling
    corrections); None trains on the plain mean."""

    @classmethod
    def from_parts(cls, **parts: torch.Tensor) -> "Selection":
        indices = torch.sort(torch.cat(list(parts.values()))).values
        return cls(indices, {name: int(p.numel()) for name, p in parts.items()})


class SelectionContext(Protocol):
    """What a sampler may ask of the data and the workers. Methods marked collective must be
    called by every worker in the same order."""

    num_points: int
    total_steps: int
    seed: int
    device: torch.device
    """Where the workers' selections live."""

    def residual_l1(self, precision: str = "full") -> torch.Tensor:
        """Local Σ_c |r| over this worker's shard, [n_local] (no communication)."""

    def residual_l1_at(self, rows: torch.Tensor, precision: str = "full") -> torch.Tensor:
        """Σ_c |r| at some rows of this worker's shard, [len(rows)] (no communication)."""

    def local_part(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Of ascending global ``indices``, the ones this worker owns: (shard rows, global indices)."""

    def distinct_draw(self, count: int, step: int) -> torch.Tensor:
        """``count`` distinct global indices in random order from the (seed, step) generator."""

    def ntk_scores(self) -> torch.Tensor:
        """Local NTK scores ‖(J Jᵀ r)_i‖² with the global v, [n_local]. Collective."""

    def ranking_precision(self, setting: str) -> str:
        """The precision of this model's ranking passes for ``setting`` ('auto' resolved)."""

    def ntk_scores_at(self, rows: torch.Tensor, precision: str = "full") -> torch.Tensor:
        """NTK scores of some rows of every worker, with v summed over those rows. Collective."""

    def output_sq_norms(self, rows: torch.Tensor | None = None, precision: str = "full") -> torch.Tensor:
        """Σ_c f(x)² over this worker's shard or some rows of it, [n] (no communication)."""

    def global_topk(
        self,
        local_scores: torch.Tensor,
        k: int,
        exclude: torch.Tensor | None = None,
        indices: torch.Tensor | None = None,
        num_candidates: int | None = None,
    ) -> torch.Tensor:
        """The k best global indices by score (canonical order), excluding ``exclude``; the scores
        cover this worker's shard, or the candidates with ascending global ``indices``
        (``num_candidates`` of them over all workers, when known). Collective."""

    def random_picks(self, count: int, exclude: torch.Tensor, step: int) -> torch.Tensor:
        """``count`` uniform picks outside ``exclude`` from the (seed, step) generator."""

    def arange(self) -> torch.Tensor:
        """All global indices [N] on the workers' device."""

    # Primitives of the baselines (int, egra, soft, evos, expansive). ``seed`` and ``spec`` are
    # the run's seed and the signal's description.

    def local_range(self) -> tuple[int, int]:
        """[start, stop) of the global indices this worker owns (no communication)."""

    def local_values(self, predicted: bool) -> torch.Tensor:
        """This worker's targets, or f(x) without gradient, in [0, 1]: [n_local, C]."""

    def halo(self, local: torch.Tensor, before: int, after: int, wrap: bool = False):
        """``local`` [n_w, ...] extended along dim 0 by up to ``before`` entries of the workers
        before and ``after`` of the workers after (cyclically if ``wrap``), as one process
        holding the whole signal would see them. Returns (block, num_before, num_after). Collective."""

    def global_sum(self, value: torch.Tensor) -> torch.Tensor:
        """Sum over workers (a new tensor). Collective."""

    def global_max(self, value: float) -> float:
        """Largest value over workers. Collective."""

    def weighted_picks(
        self, local_weights: torch.Tensor, count: int, exclude: torch.Tensor | None, step: int, salt: int
    ) -> torch.Tensor:
        """``count`` global indices drawn without replacement ∝ weights outside ``exclude``. Collective."""

    def sample_stats(self, indices: torch.Tensor) -> torch.Tensor:
        """[k, 2 + D] per global index: mean_c |r|, mean_c r², ∂(mean_c r²)/∂x. Collective."""


class Sampler:
    """Base class: ``select`` is called once per step by every worker.

    Every sampler is built as ``Cls(cfg, common)``: ``cfg`` is its own config section
    (``sampler.<name>``, a dataclass defined beside the class; None for a sampler without
    options) and ``common`` the keys every sampler shares (``sampler.ratio``, ``.interval``, …)."""

    observes = False
    """True for a sampler that keeps a map of the training residuals: the loop then hands it
    each step's per-sample errors through ``observe(ctx, indices, errors)`` (collective)."""
    needs_image = False
    """True for a sampler built on image operators (edges, Laplacians): 2-D grids only; a run
    on any other signal is refused before it starts."""

    def __init__(self, cfg, common):
        self.cfg, self.common = cfg, common

    @classmethod
    def check_config(cls, common) -> None:
        """ValueError where the common keys do not suit this sampler (called by validation)."""

    def select(self, ctx: SelectionContext, step: int) -> Selection:
        raise NotImplementedError

    def observe(self, ctx: SelectionContext, indices: torch.Tensor, errors: torch.Tensor) -> None:
        """Only where ``observes``: the per-sample residuals [k] of the selection ``indices`` [k]
        as the training pass measured them, the same on every worker."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        del state


class ScheduledSampler(Sampler):
    """A sampler that draws a new selection when ``sampler.interval`` says so and reuses its last
    one in between, with the size set by the ratio schedule at the step of the draw."""

    def __init__(self, cfg, common):
        super().__init__(cfg, common)
        self.last: Selection | None = None

    def select(self, ctx: SelectionContext, step: int) -> Selection:
        common = self.common
        if self.last is None or reselect_at(common.interval, step, ctx.total_steps):
            count = num_selected(
                ratio_at(common.ratio_schedule, common.ratio, step, ctx.total_steps), ctx.num_points
            )
            self.last = self.draw(ctx, step, count)
        return self.last

    def draw(self, ctx: SelectionContext, step: int, count: int) -> Selection:
        """A fresh selection of ``count`` coordinates."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {"last": None if self.last is None else self.last.indices}

    def load_state_dict(self, state: dict) -> None:
        self.last = None if state.get("last") is None else Selection(state["last"])
