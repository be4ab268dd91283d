"""Multiresolution hash-grid encoding (Müller et al., Instant NGP, 2022) with a small MLP, in
plain PyTorch: the capacity that large signals need, still a function ``torch.func`` can
differentiate with respect to every table entry (so NINT scores it like any other model).

Level l has resolution floor(base · growth^l) with growth chosen so that the last level reaches
``max_resolution``. A level whose dense grid fits in the table is indexed densely; finer levels
hash the integer corner coordinates (XOR of coordinate × prime) into ``2^log2_size`` entries.
Features of the 2^D corners are interpolated (bi/trilinearly) and concatenated over levels.
Maps coordinates [N, D] in [-1, 1] to values [N, C].
"""

import math

import torch
from torch import nn

from nint_dist.models.mlp import relu_mlp

_PRIMES = (1, 2654435761, 805459861)


class HashGrid(nn.Module):
    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        layers: int = 3,
        width: int = 64,
        levels: int = 16,
        log2_size: int = 19,
        features: int = 2,
        base_resolution: int = 16,
        max_resolution: int = 2048,
    ):
        super().__init__()
        if in_dim > len(_PRIMES):
            raise ValueError(f"the hash grid supports up to {len(_PRIMES)} coordinate dimensions")
        self.in_dim, self.levels, self.size = in_dim, levels, 2**log2_size
        growth = math.exp((math.log(max_resolution) - math.log(base_resolution)) / max(levels - 1, 1))
        self.resolutions = [int(math.floor(base_resolution * growth**level)) for level in range(levels)]
        self.tables = nn.Parameter(torch.empty(levels, self.size, features).uniform_(-1e-4, 1e-4))
        corners = torch.tensor([[(c >> d) & 1 for d in range(in_dim)] for c in range(2**in_dim)])
        self.register_buffer("corners", corners, persistent=False)
        self.register_buffer("primes", torch.tensor(_PRIMES[:in_dim]), persistent=False)
        self.mlp = relu_mlp(levels * features, out_dim, layers, width)

    def _indices(self, corner: torch.Tensor, resolution: int) -> torch.Tensor:
        """Table rows of integer corner coordinates [N, K, D] at one level: [N, K]."""
        side = resolution + 1
        if side**self.in_dim <= self.size:  # dense: one entry per grid point, Σ_d corner_d · side^d
            index = corner[..., self.in_dim - 1]
            for d in range(self.in_dim - 2, -1, -1):  # no tensor made from host values: no GPU wait
                index = index * side + corner[..., d]
            return index
        hashed = corner[..., 0] * self.primes[0]
        for d in range(1, self.in_dim):
            hashed = hashed ^ (corner[..., d] * self.primes[d])
        return hashed % self.size

    def encode(self, coords: torch.Tensor) -> torch.Tensor:
        unit = ((coords + 1) * 0.5).clamp(0, 1)
        features = []
        for level, resolution in enumerate(self.resolutions):
            position = unit * resolution
            base = position.floor().clamp(max=resolution - 1)
            frac = position - base
            corner = base.long()[:, None, :] + self.corners[None]  # [N, 2^D, D]
            weight = torch.where(self.corners[None].bool(), frac[:, None, :], 1 - frac[:, None, :]).prod(-1)
            values = self.tables[level][self._indices(corner, resolution)]  # [N, 2^D, F]
            features.append((weight[..., None].to(values.dtype) * values).sum(1))
        return torch.cat(features, dim=-1)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.encode(coords))
