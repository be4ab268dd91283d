"""Model registry: one dict from name to builder. Models are plain modules mapping coordinates
[N, D] to values [N, C]; they know nothing of DDP and can be called by ``torch.func``."""

from collections.abc import Callable

from torch import nn

from nint_dist.models.ffn import FourierFeatureMLP
from nint_dist.models.hashgrid import HashGrid
from nint_dist.models.siren import Siren


def _siren(in_dim: int, out_dim: int, cfg) -> nn.Module:
    return Siren(in_dim, out_dim, cfg.layers, cfg.width, cfg.w0, cfg.w0_initial)


def _ffn(in_dim: int, out_dim: int, cfg) -> nn.Module:
    return FourierFeatureMLP(in_dim, out_dim, cfg.layers, cfg.width, cfg.ff_features, cfg.ff_scale)


def _hashgrid(in_dim: int, out_dim: int, cfg) -> nn.Module:
    return HashGrid(in_dim, out_dim, cfg.layers, cfg.width, cfg.hash_levels, cfg.hash_log2_size,
                    cfg.hash_features, cfg.hash_base_resolution, cfg.hash_max_resolution,
                    cfg.hash_backend, cfg.hash_dtype)  # fmt: skip


MODELS: dict[str, Callable[[int, int, object], nn.Module]] = {
    "siren": _siren,
    "ffn": _ffn,
    "hashgrid": _hashgrid,
}


def build_model(in_dim: int, out_dim: int, cfg) -> nn.Module:
    """Build the model named ``cfg.name`` (a ModelConfig or anything with its fields)."""
    return MODELS[cfg.name](in_dim, out_dim, cfg)
