"""Model registry: ``model.name`` → (model class, its config dataclass or None). Models are plain
modules mapping coordinates [N, D] to values [N, C]; they know nothing of DDP and can be called
by ``torch.func``.

A new model is one module (its class with a ``from_config`` classmethod and, if it has options,
a config dataclass beside it) plus one entry here: its options then appear as
``model.<name>.*`` with no other edit. Every model is built as
``Cls.from_config(in_dim, out_dim, cfg.model.<section>, cfg.model)``; a class may also define
``check_device(cfg, device)`` to refuse a ``train.device`` it cannot run on."""

from torch import nn

from nint_dist.models.ffn import FfnConfig, FourierFeatureMLP
from nint_dist.models.hashgrid import HashGrid, HashGridConfig
from nint_dist.models.siren import Siren, SirenConfig

MODELS: dict[str, tuple[type[nn.Module], type | None]] = {
    "siren": (Siren, SirenConfig),
    "ffn": (FourierFeatureMLP, FfnConfig),
    "hashgrid": (HashGrid, HashGridConfig),
}


def section_name(name: str) -> str:
    """The config section of a registered name (a dash becomes an underscore)."""
    return name.replace("-", "_")


def _options(cfg):
    return getattr(cfg, section_name(cfg.name)) if MODELS[cfg.name][1] is not None else None


def build_model(in_dim: int, out_dim: int, cfg) -> nn.Module:
    """Build the model named ``cfg.name`` from its own section of ``cfg`` (the model section)."""
    return MODELS[cfg.name][0].from_config(in_dim, out_dim, _options(cfg), cfg)


def is_dense(model: nn.Module) -> bool:
    """Whether the model's passes are mostly dense matrix products over per-row activations
    (its class says ``MATMUL_BOUND``): on a CPU they run faster in blocks of rows that stay in
    cache, and their rankings keep their top sets in bfloat16. A hash grid's are not: they
    gather from tables, and each backward pass writes a gradient the size of the tables."""
    return bool(getattr(model, "MATMUL_BOUND", False))


def check_device(cfg, device: str) -> None:
    """ValueError where the model section ``cfg`` cannot run on ``train.device``."""
    check = getattr(MODELS[cfg.name][0], "check_device", None)
    if check is not None:
        check(_options(cfg), device)
