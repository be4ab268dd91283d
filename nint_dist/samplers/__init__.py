"""Sampler registry: ``sampler.name`` → (sampler class, its config dataclass or None).

A new sampler is one module (its class and, if it has options, a config dataclass beside it)
plus one entry here: its options then appear as ``sampler.<name>.*`` (a dash in the name
becomes an underscore) in validation, ``--help-config`` and saved configs with no other edit.
Every sampler is built as ``Cls(cfg.sampler.<section>, cfg.sampler)`` (see ``Sampler``)."""

from nint_dist.samplers.base import Sampler, Selection, SelectionContext
from nint_dist.samplers.egra import Egra, EgraConfig
from nint_dist.samplers.error_map import ErrorMap, ErrorMapConfig
from nint_dist.samplers.evos import Evos, EvosConfig
from nint_dist.samplers.expansive import Expansive, ExpansiveConfig
from nint_dist.samplers.int_sampler import ErrorTopK
from nint_dist.samplers.nint import Nint, NintConfig
from nint_dist.samplers.nint_paper import NintPaper, NintPaperConfig
from nint_dist.samplers.simple import FullBatch, Shuffled, Uniform
from nint_dist.samplers.soft import SoftConfig, SoftMining
from nint_dist.samplers.stratified import Stratified, StratifiedConfig

SAMPLERS: dict[str, tuple[type[Sampler], type | None]] = {
    "full": (FullBatch, None),
    "uniform": (Uniform, None),
    "shuffled": (Shuffled, None),
    "nint-paper": (NintPaper, NintPaperConfig),
    "nint": (Nint, NintConfig),
    "int": (ErrorTopK, None),
    "egra": (Egra, EgraConfig),
    "soft": (SoftMining, SoftConfig),
    "evos": (Evos, EvosConfig),
    "expansive": (Expansive, ExpansiveConfig),
    "error-map": (ErrorMap, ErrorMapConfig),
    "stratified": (Stratified, StratifiedConfig),
}


def section_name(name: str) -> str:
    """The config section of a registered name: ``nint-paper`` → ``nint_paper``."""
    return name.replace("-", "_")


def build_sampler(cfg) -> Sampler:
    """The sampler named ``cfg.name``, from its own section of ``cfg`` (the sampler section)."""
    cls, options = SAMPLERS[cfg.name]
    return cls(getattr(cfg, section_name(cfg.name)) if options is not None else None, cfg)


__all__ = ["SAMPLERS", "Sampler", "Selection", "SelectionContext", "build_sampler", "section_name"]
