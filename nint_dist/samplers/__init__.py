"""Sampler registry: one dict from ``sampler.name`` to a builder taking the SamplerConfig."""

from collections.abc import Callable

from nint_dist.samplers.base import Sampler, Selection, SelectionContext
from nint_dist.samplers.egra import Egra
from nint_dist.samplers.error_map import ErrorMap
from nint_dist.samplers.evos import Evos
from nint_dist.samplers.expansive import Expansive
from nint_dist.samplers.int_sampler import ErrorTopK
from nint_dist.samplers.nint import Nint
from nint_dist.samplers.nint_paper import NintPaper
from nint_dist.samplers.simple import FullBatch, Uniform
from nint_dist.samplers.soft import SoftMining

SAMPLERS: dict[str, Callable[[object], Sampler]] = {
    "full": lambda cfg: FullBatch(),
    "uniform": Uniform,
    "nint-paper": NintPaper,
    "nint": Nint,
    "int": ErrorTopK,
    "egra": Egra,
    "soft": SoftMining,
    "evos": Evos,
    "expansive": Expansive,
    "error-map": ErrorMap,
}


def build_sampler(cfg) -> Sampler:
    return SAMPLERS[cfg.name](cfg)


__all__ = ["SAMPLERS", "Sampler", "Selection", "SelectionContext", "build_sampler"]
