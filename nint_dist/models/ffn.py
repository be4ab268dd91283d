"""Fourier-feature MLP (Tancik et al., 2020): random Fourier features, then a ReLU MLP."""

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from nint_dist.models.exact import outside_autocast
from nint_dist.models.mlp import relu_mlp


@dataclass
class FfnConfig:
    """``model.ffn``: the random Fourier features."""

    features: int = 256
    """Number of random frequencies."""
    scale: float = 10.0
    """Standard deviation of the frequencies."""

    def __post_init__(self):
        if self.features < 1 or not self.scale > 0:
            raise ValueError("model.ffn.features must be at least 1 and model.ffn.scale positive")


class FourierFeatureMLP(nn.Module):
    """gamma(x) = [sin(2 pi B x), cos(2 pi B x)] with B ~ N(0, scale^2) of shape [features, D],
    fixed at construction (a buffer, drawn from torch's global generator), followed by
    ``layers`` linear layers with ReLU between them. Maps [N, D] to [N, C]. The projection B x
    keeps the model's dtype under autocast: its phases reach hundreds of radians, which
    bfloat16 would get wrong by a large fraction of a period."""

    MATMUL_BOUND: ClassVar[bool] = True
    """Its passes are mostly dense matrix products (``models.is_dense``)."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        layers: int = 4,
        width: int = 256,
        features: int = 256,
        scale: float = 10.0,
    ):
        super().__init__()
        if layers < 1:
            raise ValueError("a Fourier-feature MLP needs at least 1 layer")
        self.register_buffer("frequencies", torch.randn(features, in_dim) * scale)
        self.net = relu_mlp(2 * features, out_dim, layers, width)

    @classmethod
    def from_config(cls, in_dim: int, out_dim: int, cfg: FfnConfig, common) -> "FourierFeatureMLP":
        return cls(in_dim, out_dim, common.layers, common.width, cfg.features, cfg.scale)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        with outside_autocast(coords.device):
            projected = 2 * math.pi * coords @ self.frequencies.to(coords.dtype).T
        return self.net(torch.cat([torch.sin(projected), torch.cos(projected)], dim=-1))
