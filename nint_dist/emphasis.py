"""Residual emphasis: each trained sample's loss weighted by its own residual, measured by the
training forward pass itself.

NINT's residual part trains on the coordinates whose residuals are largest, and must score a
pool to find them. Drawing coordinates in proportion to e(x)^p (e = mean_c |f − y|) and
training on the plain mean has the expected gradient Σ_x e(x)^p ∇l(x) / Σ_x e(x)^p. A uniform
batch whose per-sample losses are weighted by w_i = e_i^p / s, with s the signal's mean of e^p,
has the same expected gradient, and costs nothing: the forward pass measures every e_i before
the backward pass needs the weights. On any other sampler's batch the weights tilt its draw
the same way.

With ``share`` λ < 1 the weights are (1 − λ) + λ·e^p / s: the expected gradient of drawing from
the mixture (1 − λ)·uniform + λ·(∝ e^p), which bounds how little a well-fitted sample counts.
``max_ratio`` caps e^p / s: a few samples far worse than the rest, weighted in full, make a
step's gradient theirs, and such steps broke long fits down (a SIREN on the SDF volume fell
from 50 to 33 dB within 80 steps uncapped, from 51 to 44 dB capped at 4; capped at 2 it did
not; BENCHMARKS.md).

The scale s is the mean of e^p over the previous step's whole selection, a scalar the same on
every worker and in every micro-batch pass: the weights, and so the run, do not depend on how
the selection is split. Before the first step has measured it, s is 0 and the weights are 1.
Why s at all: without it the gradient shrinks with the residuals, and Adam, whose second
moment averages about a thousand steps, takes ever smaller steps.
"""

from dataclasses import dataclass

import torch


@dataclass
class EmphasisConfig:
    """``sampler.emphasis``: weights of the trained samples' losses from their own residuals."""

    power: float | None = None
    """p: each trained sample's loss weighted ∝ e^p, e = mean_c |f − y| as the training pass
    measured it (1: the expected gradient of drawing samples ∝ their residual); 0 trains on
    the plain mean. null: 1 where sampler.name=auto draws uniformly (audio, volumes), else 0."""
    share: float = 1.0
    """λ: the weights are (1 − λ) + λ·min(e^p / s, max_ratio), s the previous step's mean of
    e^p; below 1 the plain mean is mixed in."""
    max_ratio: float = 2.0
    """Largest e^p / s a sample's weight follows: a few samples far worse than the rest would
    otherwise dominate a step's gradient (uncapped, or capped at 4, long fits broke down;
    BENCHMARKS.md)."""

    def __post_init__(self):
        if (self.power is not None and self.power < 0) or not 0.0 <= self.share <= 1.0 or self.max_ratio < 1:
            raise ValueError(
                "sampler.emphasis.power must be >= 0, sampler.emphasis.share in [0, 1] and"
                " sampler.emphasis.max_ratio >= 1"
            )

    @property
    def active(self) -> bool:
        return bool(self.power) and self.share > 0


def emphasis_weights(
    errors: torch.Tensor, power: float, share: float, max_ratio: float, scale: torch.Tensor
) -> torch.Tensor:
    """w_i = (1 − share) + share · min(errors_i^power / scale, max_ratio), or 1 everywhere while
    ``scale`` is 0 (nothing measured yet). ``errors`` [m] are the samples' mean_c |f − y| (no
    gradient flows through the weights)."""
    relative = (errors.detach().pow(power) / torch.where(scale > 0, scale, 1.0)).clamp_(max=max_ratio)
    return torch.where(scale > 0, (1.0 - share) + share * relative, torch.ones_like(relative))


class Emphasis:
    """The weights and their running scale: ``weigh`` in each pass of a step; after the step,
    ``rescale`` with Σ e^p over the whole selection (each worker's ``power_sum`` of its part,
    summed over the workers by the caller)."""

    def __init__(self, cfg: EmphasisConfig, device: torch.device, dtype: torch.dtype):
        self.power, self.share, self.max_ratio = cfg.power, cfg.share, cfg.max_ratio
        self.scale = torch.zeros((), device=device, dtype=dtype)
        """Mean e^p over the previous step's selection; updated in place (CUDA graphs read it)."""

    def weigh(self, errors: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
        """The loss weights of a pass: the emphasis of its samples' ``errors`` [m], times the
        sampler's own ``weights`` [m] where it has any."""
        emphasis = emphasis_weights(errors, self.power, self.share, self.max_ratio, self.scale)
        return emphasis if weights is None else weights * emphasis

    def power_sum(self, errors: torch.Tensor) -> torch.Tensor:
        """Σ e^p over some samples' residuals ``errors`` [m]: a scalar tensor."""
        return errors.detach().to(self.scale.dtype).pow(self.power).sum()

    def rescale(self, total: torch.Tensor, num_selected: int) -> None:
        """The next step's scale from Σ e^p over a whole selection of ``num_selected`` samples."""
        self.scale.copy_(total / max(num_selected, 1))

    def state_dict(self) -> dict:
        return {"emphasis_scale": self.scale.clone()}

    def load_state_dict(self, state: dict) -> None:
        if "emphasis_scale" in state:
            self.scale.copy_(state["emphasis_scale"])
