"""Multiresolution hash-grid encoding (Müller et al., Instant NGP, 2022) with a small MLP, in
plain PyTorch: the capacity that large signals need, still a function ``torch.func`` can
differentiate with respect to every table entry (so NINT scores it like any other model).

Level l has resolution floor(base · growth^l) with growth chosen so that the last level reaches
``max_resolution``. A level whose dense grid fits in ``2^log2_size`` entries is indexed densely
and holds only its (resolution + 1)^D grid points; finer levels hash the integer corner
coordinates (XOR of coordinate × prime) into ``2^log2_size`` entries. All levels' entries are
rows of one parameter [Σ rows, F], level after level, so no row is allocated, zeroed, and
updated by Adam that no point can reach (with 16 levels and 2^19–2^20 entries, most coarse
levels need a small fraction of a table: the parameter is 2–3× smaller than 16 full tables).
Features of the 2^D corners are interpolated (bi/trilinearly) and concatenated over levels.
Maps coordinates [N, D] in [-1, 1] to values [N, C].

``backend`` 'triton' computes the encoding with the fused kernels of
``nint_dist.models.hashgrid_triton`` (same rows, weights, parameters and state-dict keys, so
checkpoints are interchangeable); 'auto' uses them for CUDA tensors when triton is installed.
``table_dtype`` float16 rounds table entries to half precision where they are read (the kernels
then gather from a half-precision copy, half the memory traffic) while the parameter, its
gradient and the optimizer state stay in the module's precision, as Instant NGP does.
"""

import math
import os
from dataclasses import dataclass

import torch
from torch import nn

from nint_dist.models.mlp import relu_mlp

HASH_PRIMES = (1, 2654435761, 805459861)  # dim 0's must stay 1 (the kernels assume it)
BACKENDS = ("torch", "triton", "auto")
TABLE_DTYPES = {"float32": None, "float16": torch.float16}


@dataclass
class HashGridConfig:
    """``model.hashgrid``: the levels and tables of the encoding."""

    levels: int = 16
    """Number of resolution levels."""
    log2_size: int = 19
    """log2 of the entries per level's table."""
    features: int = 2
    """Features per entry."""
    base_resolution: int = 16
    """Grid points per axis at the coarsest level."""
    max_resolution: int = 2048
    """Grid points per axis at the finest level (about the signal's largest side)."""
    backend: str = "torch"
    """Encoding: torch (plain PyTorch), triton (fused kernels, CUDA; needs the triton package) or
    auto (triton for CUDA tensors where it is installed, torch otherwise)."""
    dtype: str = "float32"
    """Precision table entries are read at; float16 halves the kernels' gather traffic, while
    the parameter, its gradient and the optimizer state stay float32."""

    def __post_init__(self):
        if min(self.levels, self.log2_size, self.features, self.base_resolution, self.max_resolution) < 1:
            raise ValueError(
                "model.hashgrid.levels, log2_size, features, base_resolution and max_resolution"
                " must be at least 1"
            )
        check_options(self.backend, self.dtype)


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
        backend: str = "torch",
        table_dtype: str = "float32",
    ):
        super().__init__()
        if in_dim > len(HASH_PRIMES):
            raise ValueError(f"the hash grid supports up to {len(HASH_PRIMES)} coordinate dimensions")
        check_options(backend, table_dtype)
        self.backend, self.read_dtype = backend, TABLE_DTYPES[table_dtype]
        self.in_dim, self.levels, self.size = in_dim, levels, 2**log2_size
        growth = math.exp((math.log(max_resolution) - math.log(base_resolution)) / max(levels - 1, 1))
        self.resolutions = [int(math.floor(base_resolution * growth**level)) for level in range(levels)]
        dense = [(r + 1) ** in_dim <= self.size for r in self.resolutions]
        self.level_rows = [
            (r + 1) ** in_dim if d else self.size for r, d in zip(self.resolutions, dense, strict=True)
        ]
        starts = [sum(self.level_rows[:level]) for level in range(levels)]
        self.tables = nn.Parameter(torch.empty(sum(self.level_rows), features).uniform_(-1e-4, 1e-4))
        self.register_buffer("primes", torch.tensor(HASH_PRIMES[:in_dim]), persistent=False)
        level_info = list(zip(self.resolutions, map(int, dense), starts, self.level_rows, strict=True))
        self.register_buffer("level_info", torch.tensor(level_info, dtype=torch.int64), persistent=False)
        self.num_dense = sum(dense)
        sides = [r + 1 for r, d in zip(self.resolutions, dense, strict=True) if d]
        strides = [[side**d for d in range(in_dim)] for side in sides]  # a dense row: Σ_d corner_d · side^d
        corners = range(2**in_dim)  # corner c's offset along axis d: bit d of c
        offsets = [[sum(n for d, n in enumerate(row) if c >> d & 1) for c in corners] for row in strides]
        self.register_buffer("dense_strides", torch.tensor(strides, dtype=torch.int64).view(-1, in_dim),
                             persistent=False)  # fmt: skip
        self.register_buffer("dense_offsets", torch.tensor(offsets, dtype=torch.int64).view(-1, 2**in_dim),
                             persistent=False)  # fmt: skip
        self.mlp = relu_mlp(levels * features, out_dim, layers, width)

    @classmethod
    def from_config(cls, in_dim: int, out_dim: int, cfg: HashGridConfig, common) -> "HashGrid":
        return cls(in_dim, out_dim, common.layers, common.width, cfg.levels, cfg.log2_size, cfg.features,
                   cfg.base_resolution, cfg.max_resolution, cfg.backend, cfg.dtype)  # fmt: skip

    @staticmethod
    def check_device(cfg: HashGridConfig, device: str) -> None:
        """ValueError where the backend cannot run on ``train.device``."""
        if cfg.backend == "triton" and device == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
            raise ValueError(
                "model.hashgrid.backend=triton needs a GPU; with train.device=cpu use torch or auto"
            )

    def level_table(self, level: int) -> slice:
        """The rows of ``tables`` that hold one level's entries."""
        start, rows = self.level_info[level, 2:].tolist()
        return slice(start, start + rows)

    def is_unpacked(self, tensor: object) -> bool:
        """Whether ``tensor`` has the tables' layout from before the levels were packed
        ([levels, 2^log2_size, F], a full table per level), as checkpoints of then hold it."""
        return torch.is_tensor(tensor) and tensor.dim() == 3 and tensor.shape[:2] == (self.levels, self.size)

    def pack(self, unpacked: torch.Tensor) -> torch.Tensor:
        """A tensor of the earlier layout in the packed one [Σ rows, F]: a level's rows past its
        own count were never read (nor, in Adam's moments, ever non-zero)."""
        return torch.cat([unpacked[level, :rows] for level, rows in enumerate(self.level_rows)])

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "tables"
        if self.is_unpacked(state_dict.get(key)):  # a checkpoint from before the levels were packed
            state_dict[key] = self.pack(state_dict[key])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _cells(self, coords: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Each point's cell at each level, per axis d: its lower corner [levels, N] (integers)
        and the point's fraction within it [levels, N]. One tensor per axis, contiguous over
        points: arithmetic on a trailing axis of size 2^D or D is several times slower on a CPU."""
        resolution = self.level_info[:, 0, None].to(coords.dtype)  # [levels, 1]
        unit = ((coords + 1) * 0.5).clamp(0, 1)
        lower, frac = [], []
        for d in range(self.in_dim):
            position = unit[:, d] * resolution
            cell = torch.minimum(position.floor(), resolution - 1)
            lower.append(cell.long())
            frac.append(position - cell)
        return lower, frac

    def _rows(self, lower: list[torch.Tensor]) -> torch.Tensor:
        """Rows of ``tables`` [Σ rows, F] of the 2^D corners of the cells with lower corners
        ``lower`` (per axis, [levels, N]): [levels, N, 2^D], corner c having offset (c >> d) & 1
        along axis d. Levels whose dense grid fits in 2^log2_size entries (a prefix: resolutions
        grow) are indexed densely, Σ_d corner_d · side^d: the lower corner's row plus an offset
        per corner; finer levels hash, XOR over axes of corner_d · prime_d."""
        parts = []
        dense = self.num_dense
        if dense:
            first = lower[0][:dense]
            for d in range(1, self.in_dim):
                first = first + lower[d][:dense] * self.dense_strides[:, d, None]
            parts.append(first[:, :, None] + self.dense_offsets[:, None, :])
        if dense < self.levels:
            corners = [None]
            for d in range(self.in_dim):  # bit d of a corner's index is its offset along axis d
                term = lower[d][dense:] * self.primes[d]
                pair = (term, term + self.primes[d])
                corners = [t if c is None else c ^ t for t in pair for c in corners]
            parts.append(torch.stack(corners, -1) & (self.size - 1))
        return torch.cat(parts) + self.level_info[:, 2, None, None]

    def _weights(self, frac: list[torch.Tensor]) -> torch.Tensor:
        """Multilinear weights [levels, N, 2^D] of the 2^D corners: the product over axes of
        1 − frac or frac, corner c taking frac along the axes of its set bits."""
        corners = [None]
        for f in frac:
            pair = (1 - f, f)
            corners = [t if c is None else c * t for t in pair for c in corners]
        return torch.stack(corners, -1)

    def _uses_triton(self, coords: torch.Tensor) -> bool:
        if self.backend == "auto":
            from nint_dist.models import hashgrid_triton

            return coords.is_cuda and hashgrid_triton.available()
        return self.backend == "triton"

    def encode(self, coords: torch.Tensor) -> torch.Tensor:
        """Features [N, levels · features] in the coordinates' dtype."""
        if self._uses_triton(coords):
            from nint_dist.models import hashgrid_triton

            return hashgrid_triton.encode(coords, self.tables, self.level_info, self.read_dtype)
        # All levels in one gather from the packed tables: its backward scatters into one
        # gradient of the tables' size, where a gather per level would make (and sum) one each.
        # Level-major, so that consecutive reads fall in one level's table (cache-sized on CPUs).
        lower, frac = self._cells(coords)
        weight = self._weights(frac)
        # index_select, not advanced indexing: its backward is a scatter-add into the gradient,
        # on a CPU about 1.6× as fast as advanced indexing's accumulating index_put
        rows = self._rows(lower)
        values = self.tables.index_select(0, rows.flatten()).view(*rows.shape, -1)  # [levels, N, 2^D, F]
        if self.read_dtype is not None:  # rounded on read; the gradient passes unrounded
            values = values + (values.to(self.read_dtype).to(values.dtype) - values).detach()
        features = interpolate(weight, values, batched=coords.device.type == "cpu")
        return features.transpose(0, 1).flatten(1)  # [levels, N, F] → [N, levels · F]

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.encode(coords))


def interpolate(weight: torch.Tensor, values: torch.Tensor, batched: bool) -> torch.Tensor:
    """Σ_c weight[l, n, c] · values[l, n, c, f]: [levels, N, F] in the weights' dtype, outside
    any autocast (the encoding keeps the coordinates' precision).

    ``batched``: as a batch of [1, 2^D] × [2^D, F] products, which on a CPU makes a training
    step 1.1× cheaper than the broadcast product and sum (whose backward also copied the
    product there). Otherwise the broadcast product and sum, one elementwise pass: the choice
    on GPUs, whose matrix kernels are not made for millions of 1 × 2^D products (not measured
    against each other there)."""
    with torch.autocast(weight.device.type, enabled=False):
        values = values.to(weight.dtype)
        if batched:
            return torch.matmul(weight.unsqueeze(-2), values).squeeze(-2)
        return (weight.unsqueeze(-1) * values).sum(-2)


def pack_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """In place: the optimizer's per-entry state (Adam's moments) of every hash grid's tables,
    where a checkpoint from before the levels were packed left it in the earlier layout."""
    for grid in model.modules():
        if isinstance(grid, HashGrid):
            state = optimizer.state.get(grid.tables, {})
            for key, value in state.items():
                if grid.is_unpacked(value):
                    state[key] = grid.pack(value)


def check_options(backend: str, table_dtype: str) -> None:
    """ValueError for a backend or table dtype the grid does not know, or triton missing."""
    if backend not in BACKENDS:
        raise ValueError(f"model.hashgrid.backend must be one of {list(BACKENDS)}, not {backend!r}")
    if table_dtype not in TABLE_DTYPES:
        raise ValueError(f"model.hashgrid.dtype must be one of {list(TABLE_DTYPES)}, not {table_dtype!r}")
    if backend == "triton":
        from nint_dist.models import hashgrid_triton

        if not hashgrid_triton.available():
            raise ValueError("model.hashgrid.backend=triton needs the triton package (pip install triton)")
