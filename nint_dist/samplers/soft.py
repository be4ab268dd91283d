"""``soft``: Soft Mining (Kheradmand et al., "Accelerating Neural Field Training via Soft
Mining", CVPR 2024), in the form EVOS's code ports it to image INRs.

A fixed population of B = floor(r0·N) particles at continuous positions p ∈ [0, 1]^D moves by
Langevin steps toward high loss: p ← p + a·g + b·ε (a = 20, b = 0.02), with g = (1/B)·∇_p log ℓ
measured at the previous step. Then particles outside [0, 1]^D or with a loss no larger than
the (⌊0.1·B⌋ + 1)-th smallest of the previous step are re-drawn from the image's normalised
Sobel-magnitude density, and the last ⌊0.1·B⌋ particles move to fresh uniform positions. Each
particle trains on its nearest pixel (duplicates possible) with loss weight
clamp((1 / max(e, 2⁻¹⁰))^ρ_t, 0.2, mean + std), e = mean_c |f − y| in [−1, 1] units and
ρ_t = min(t / 1000, α) (α = 0.6): importance sampling with a soft correction.

Exact for any worker count: particles live on every worker and move by a (seed, step)
generator; each particle's error, loss and coordinate gradient are measured by the worker that
owns its pixel and assembled with one all-reduce; re-inits are an exact weighted draw.
Deliberate differences from the public port: the flat index is W·row + col (the port uses
H·row + col, wrong for non-square images); the drift divides by w·ℓ, not w²·ℓ (the port
reweights the loss vector in place before reusing it), so it is (1/B)·∇ log ℓ as in the paper;
re-initialised particles are drawn without replacement; and the errors and the coordinate
gradient come from one extra forward/backward over the B particles before the update, where the
port reads them off the training pass — the same numbers, at the cost of one more pass.
"""

import math
from dataclasses import dataclass

import torch

from nint_dist.samplers.base import Sampler, Selection, SelectionContext
from nint_dist.samplers.egra import grey_luma, image_rows, local_block, sobel
from nint_dist.schedules import num_selected
from nint_dist.selection import step_generator

SALT_MOVE, SALT_REINIT = 0x50F1, 0x50F2
ERROR_FLOOR = 2.0**-10


@dataclass
class SoftConfig:
    """``sampler.soft``: the importance correction and the particles' moves."""

    alpha: float = 0.6
    """Final exponent of the importance correction (1 / error)^alpha; 0 is hard mining."""
    warmup: int = 1000
    """Steps over which the exponent ramps from 0 (rho_t = min(t / warmup, alpha))."""
    explore_share: float = 0.1
    """Share of particles moved to fresh uniform positions every step."""
    reinit_share: float = 0.1
    """Share of lowest-loss particles re-drawn from the edge density every step."""
    drift: float = 20.0
    """Langevin step size a on the gradient of the log loss (positions in [0, 1])."""
    noise: float = 0.02
    """Langevin noise scale b (positions in [0, 1])."""

    def __post_init__(self):
        if not 0.0 <= self.explore_share <= 1.0 or not 0.0 <= self.reinit_share <= 1.0:
            raise ValueError("sampler.soft.explore_share and sampler.soft.reinit_share must be in [0, 1]")
        if self.alpha < 0 or self.warmup < 0 or self.noise < 0:
            raise ValueError("sampler.soft.alpha, sampler.soft.warmup and sampler.soft.noise must be >= 0")


def soft_weights(errors: torch.Tensor, rho: float) -> torch.Tensor:
    """clamp((1 / max(e, 2⁻¹⁰))^ρ, min 0.2, max mean + std) over the batch: [B] → [B]."""
    w = errors.clamp_min(ERROR_FLOOR).reciprocal().pow(rho)
    upper = float(w.mean() + w.std()) if w.numel() > 1 else float(w.max())
    return torch.clamp(w, min=0.2, max=upper)


def positions_to_flat(positions: torch.Tensor, grid: tuple[int, ...]) -> torch.Tensor:
    """Nearest grid point of positions in [0, 1]^D, as row-major flat indices: [B, D] → [B]."""
    flat = torch.zeros(positions.shape[0], dtype=torch.int64)
    for axis, size in enumerate(grid):
        flat = flat * size + torch.round(positions[:, axis] * (size - 1)).long()
    return flat


def flat_to_positions(flat: torch.Tensor, grid: tuple[int, ...]) -> torch.Tensor:
    """Positions in [0, 1]^D of row-major flat indices: [B] → [B, D] float64."""
    columns, rest = [], flat.cpu()
    for size in reversed(grid):
        columns.append((rest % size).double() / max(size - 1, 1))
        rest = rest // size
    return torch.stack(columns[::-1], dim=1)


class SoftMining(Sampler):
    def __init__(self, cfg: SoftConfig, common):
        super().__init__(cfg, common)
        self.positions: torch.Tensor | None = None
        self.loss = torch.empty(0, dtype=torch.float64)
        self.drift = torch.empty(0, dtype=torch.float64)
        self.density: torch.Tensor | None = None

    @classmethod
    def check_config(cls, common) -> None:
        if common.ratio_schedule != "constant":
            raise ValueError("sampler.name=soft keeps a fixed population; use ratio_schedule=constant")

    def edge_density(self, ctx: SelectionContext) -> torch.Tensor:
        """Sobel magnitude of the grey image / its maximum, clipped to [1e-5, 1] (uniform for
        signals that are not images): [n_local]. Collective."""
        lo, hi = ctx.local_range()
        if len(ctx.spec.grid) != 2:
            return torch.ones(hi - lo, dtype=torch.float64)
        rows = image_rows(ctx, ctx.local_values(predicted=False))
        block, own = local_block(ctx, grey_luma(rows), 1)
        gx, gy = sobel(block)
        magnitude = (gx.pow(2) + gy.pow(2)).sqrt()[own].reshape(-1)
        top = ctx.global_max(float(torch.max(magnitude)) if magnitude.numel() else 0.0)
        return (magnitude / max(top, 1e-300)).clamp(1e-5, 1.0)

    def move(self, ctx: SelectionContext, step: int, generator: torch.Generator) -> None:
        cfg, pos = self.cfg, self.positions
        count = pos.shape[0]
        pos += cfg.drift * self.drift + cfg.noise * torch.randn(
            pos.shape, generator=generator, dtype=pos.dtype
        )
        num_low = math.floor(cfg.reinit_share * count)
        kth = torch.sort(self.loss).values[min(num_low, count - 1)]
        bad = ((pos < 0) | (pos > 1)).any(dim=1) | (self.loss <= kth)
        num_explore = math.floor(cfg.explore_share * count)
        if num_explore:
            pos[count - num_explore :] = torch.rand(
                (num_explore, pos.shape[1]), generator=generator, dtype=pos.dtype
            )
        num_bad = int(bad.sum())
        if self.density is None:
            self.density = self.edge_density(ctx)
        picks = ctx.weighted_picks(self.density, num_bad, None, step, SALT_REINIT)
        pos[bad] = flat_to_positions(picks, ctx.spec.grid)
        pos.clamp_(0.0, 1.0)

    def select(self, ctx: SelectionContext, step: int) -> Selection:
        cfg, grid = self.cfg, ctx.spec.grid
        generator = step_generator(ctx.seed + SALT_MOVE, step)
        if self.positions is None:
            count = num_selected(self.common.ratio, ctx.num_points)
            self.positions = torch.rand((count, len(grid)), generator=generator, dtype=torch.float64)
        else:
            self.move(ctx, step, generator)
        count = self.positions.shape[0]
        flat = positions_to_flat(self.positions, grid)
        measured = ctx.sample_stats(flat)
        stats = measured.to(torch.float64).cpu()
        # targets live in [0, 1]; the port's errors are in [−1, 1] units, twice as large
        errors, losses, grad_x = 2.0 * stats[:, 0], stats[:, 1], stats[:, 2:]
        weights = soft_weights(errors, min(step / max(cfg.warmup, 1), cfg.alpha))
        extent = torch.tensor([hi - lo for lo, hi in ctx.spec.domain], dtype=torch.float64)
        self.drift = grad_x * extent / (count * losses.clamp_min(1e-30))[:, None]
        self.loss = losses
        order = torch.sort(flat, stable=True).indices
        device = measured.device
        return Selection(flat[order].to(device), {"particles": count}, weights[order].to(device))

    def state_dict(self) -> dict:
        return {"positions": self.positions, "loss": self.loss, "drift": self.drift}

    def load_state_dict(self, state: dict) -> None:
        self.positions, self.loss, self.drift = state["positions"], state["loss"], state["drift"]
