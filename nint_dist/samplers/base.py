"""The sampler interface: every strategy turns a step into a global selection using the
primitives of a ``SelectionContext``; the context hides whether there is one worker or many.

A sampler's decisions may depend only on the step, its own state and the values the context
returns (which are identical on every worker), so all workers run the same collectives and
reach the same selection.
"""

from dataclasses import dataclass, field
from typing import Protocol

import torch


@dataclass
class Selection:
    """One step's global selection: ascending global indices and how they were chosen."""

    indices: torch.Tensor
    """int64 [k], ascending, on the CPU."""
    shares: dict[str, int] = field(default_factory=dict)
    """Number of indices contributed by each part (e.g. ntk / residual / random)."""

    @classmethod
    def from_parts(cls, **parts: torch.Tensor) -> "Selection":
        indices = torch.sort(torch.cat([p.cpu() for p in parts.values()])).values
        return cls(indices, {name: int(p.numel()) for name, p in parts.items()})


class SelectionContext(Protocol):
    """What a sampler may ask of the data and the workers. Methods marked collective must be
    called by every worker in the same order."""

    num_points: int
    total_steps: int

    def residual_l1(self) -> torch.Tensor:
        """Local Σ_c |r| over this worker's shard, [n_local] (no communication)."""

    def ntk_scores(self) -> torch.Tensor:
        """Local NTK scores ‖(J Jᵀ r)_i‖² with the global v, [n_local]. Collective."""

    def global_topk(
        self, local_scores: torch.Tensor, k: int, exclude: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The k best global indices by score (canonical order), excluding ``exclude``. Collective."""

    def random_picks(self, count: int, exclude: torch.Tensor, step: int) -> torch.Tensor:
        """``count`` uniform picks outside ``exclude`` from the (seed, step) generator."""


class Sampler:
    """Base class: ``select`` is called once per step by every worker."""

    def select(self, ctx: SelectionContext, step: int) -> Selection:
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        del state
