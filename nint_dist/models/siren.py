"""SIREN (Sitzmann et al., 2020) with the reference code's initialisation."""

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from nint_dist.models.exact import outside_autocast


@dataclass
class SirenConfig:
    """``model.siren``: the sine frequencies."""

    w0: float = 30.0
    """Frequency of the hidden sine layers."""
    w0_initial: float = 30.0
    """Frequency of the first sine layer."""

    def __post_init__(self):
        if not self.w0 > 0 or not self.w0_initial > 0:
            raise ValueError("model.siren.w0 and model.siren.w0_initial must be positive")


class Sine(nn.Module):
    """sin(w0·x). In a Siren it marks a sine layer and holds its w0; Siren.forward folds w0 into
    the linear layer before it."""

    def __init__(self, w0: float):
        super().__init__()
        self.w0 = w0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.w0 * x)


class Siren(nn.Module):
    """``layers`` linear layers: layers − 1 sine layers of ``width`` and a linear head.

    Init as in the reference code: the first layer U(±1/d_in), every later layer (the head too)
    U(±sqrt(6/d_in)/w0); biases drawn from the same interval as their weights.
    Maps coordinates [N, D] to values [N, C]. The forward pass computes sin(w0·(Wx + b)) as
    sin((w0·W)x + w0·b): the same function with one elementwise pass fewer over the activations
    per layer, forward and backward (the parameters and their names stay those of the plain
    layers, so checkpoints do not change). The first layer keeps the model's dtype under
    autocast: its phase w0·(Wx + b) reaches thousands of radians at audio's first-layer
    frequency, where bfloat16's 8-bit mantissa is off by radians; it is a thin product
    (D inputs), so nothing is lost by computing it exactly.
    """

    MATMUL_BOUND: ClassVar[bool] = True
    """Its passes are mostly dense matrix products (``models.is_dense``)."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        layers: int = 6,
        width: int = 256,
        w0: float = 30.0,
        w0_initial: float = 30.0,
    ):
        super().__init__()
        if layers < 2:
            raise ValueError("a SIREN needs at least 2 layers (one sine layer and the head)")
        dims = [in_dim] + [width] * (layers - 1) + [out_dim]
        modules: list[nn.Module] = []
        for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            linear = nn.Linear(d_in, d_out)
            bound = 1.0 / d_in if i == 0 else math.sqrt(6.0 / d_in) / w0
            nn.init.uniform_(linear.weight, -bound, bound)
            nn.init.uniform_(linear.bias, -bound, bound)
            modules.append(linear)
            if i < layers - 1:
                modules.append(Sine(w0_initial if i == 0 else w0))
        self.net = nn.Sequential(*modules)

    @classmethod
    def from_config(cls, in_dim: int, out_dim: int, cfg: SirenConfig, common) -> "Siren":
        return cls(in_dim, out_dim, common.layers, common.width, cfg.w0, cfg.w0_initial)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        *hidden, head = self.net
        first, w0 = hidden[0], hidden[1].w0
        with outside_autocast(coords.device):
            h = torch.sin(F.linear(coords, first.weight * w0, first.bias * w0))
        for linear, sine in zip(hidden[2::2], hidden[3::2], strict=True):
            h = torch.sin(F.linear(h, linear.weight * sine.w0, linear.bias * sine.w0))
        return head(h)
