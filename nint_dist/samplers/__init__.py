"""Sampler registry: ``sampler.name`` → (sampler class, its config dataclass or None).

A new sampler is one module (its class and, if it has options, a config dataclass beside it)
plus one entry here: its options then appear as ``sampler.<name>.*`` (a dash in the name
becomes an underscore) in validation, ``--help-config`` and saved configs with no other edit.
Every sampler is built as ``Cls(cfg.sampler.<section>, cfg.sampler)`` (see ``Sampler``).

``sampler.name=auto``, the default, is not a sampler of its own: ``settle`` replaces it, once the
signal's kind is known, by the selection measured best at equal training seconds on that kind."""

import dataclasses

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


AUTO = "auto"
"""``sampler.name``'s default: the entry of ``BY_KIND`` for the signal's kind."""
BY_KIND: dict[str, tuple[str, float]] = {
    "image": ("nint", 0.0),
    "audio": ("uniform", 1.0),
    "volume": ("uniform", 1.0),
}
"""What ``sampler.name=auto`` runs on each kind of signal: the sampler and the residual emphasis's
power (nint_dist.emphasis). On images NINT's ranked pool pays for its pass; on audio and SDF
volumes a ranked step was worth less than a pool pass costs, and uniform draws weighted by
their own residuals did better than NINT and at least as well as uniform sampling at equal
seconds (BENCHMARKS.md, "The default sampler by kind"). Other kinds: as images."""


def settle(cfg, kind: str):
    """The sampler section ``cfg`` as it runs on a signal of ``kind``: with ``name=auto`` the
    kind's sampler; the emphasis's power, where not given, the kind's under ``auto`` and else 0."""
    name, power = BY_KIND.get(kind, BY_KIND["image"]) if cfg.name == AUTO else (cfg.name, 0.0)
    if cfg.emphasis.power is not None:
        power = cfg.emphasis.power
    return dataclasses.replace(cfg, name=name, emphasis=dataclasses.replace(cfg.emphasis, power=power))


def idle_sections(cfg) -> list[str]:
    """The option sections of a settled sampler section ``cfg`` that were given values, other
    than their defaults, for a sampler the run does not use: they do nothing."""
    return [
        f"sampler.{section_name(name)}"
        for name, (_, options) in SAMPLERS.items()
        if options is not None and name != cfg.name and getattr(cfg, section_name(name)) != options()
    ]


def section_name(name: str) -> str:
    """The config section of a registered name: ``nint-paper`` → ``nint_paper``."""
    return name.replace("-", "_")


def build_sampler(cfg) -> Sampler:
    """The sampler named ``cfg.name``, from its own section of ``cfg`` (the sampler section,
    settled: no ``auto``)."""
    cls, options = SAMPLERS[cfg.name]
    return cls(getattr(cfg, section_name(cfg.name)) if options is not None else None, cfg)


__all__ = [
    "AUTO", "BY_KIND", "SAMPLERS", "Sampler", "Selection", "SelectionContext", "build_sampler",
    "idle_sections", "section_name", "settle",
]  # fmt: skip
