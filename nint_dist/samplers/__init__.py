"""Sampler registry: one dict from ``sampler.name`` to a builder taking the SamplerConfig."""

from collections.abc import Callable

from nint_dist.samplers.base import Sampler, Selection, SelectionContext
from nint_dist.samplers.nint_paper import NintPaper
from nint_dist.samplers.simple import FullBatch, Uniform

SAMPLERS: dict[str, Callable[[object], Sampler]] = {
    "full": lambda cfg: FullBatch(),
    "uniform": Uniform,
    "nint-paper": NintPaper,
}


def build_sampler(cfg) -> Sampler:
    return SAMPLERS[cfg.name](cfg)


__all__ = ["SAMPLERS", "Sampler", "Selection", "SelectionContext", "build_sampler"]
