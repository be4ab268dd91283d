"""``error-map``: importance sampling from a persistent map of the fit's error, kept current by
training itself.

At small ratios (2^18 samples of a 14.7 MP image is 1.8%) a fresh pool of a few times the
batch is a tiny sample of the signal, and scoring it costs as much as the training step. The
training forward pass already measures the residual of every sample it trains on, for free;
this sampler keeps those residuals in a coarse map and draws the next batch from it:

- the grid is cut into tiles (``tile_side`` grid points per axis; by default chosen so that a
  uniform batch lands about ``samples_per_tile`` samples in each tile per step);
- each tile holds a running mean of the residuals trained in it (mean_c |f − y|), updated
  only when the tile is trained on: ``S ← γ·S + Σ e``, ``C ← γ·C + n`` (γ = ``decay``),
  estimate S / C; a tile never trained on reads the mean residual of the latest batch;
- a step draws k coordinates from the mixture ``uniform_share`` · uniform +
  (1 − ``uniform_share``) · (tile ∝ size · estimate^``power``): each tile gets its
  expected count rounded up or down (systematic sampling), at uniform positions inside it
  (a coordinate may come twice).

A tile's estimate is stale by the steps since it was last trained; residuals shrink as the fit
improves, so a stale estimate errs high and the tile is visited, and so refreshed, sooner —
the error corrects itself, unlike a per-coordinate cache, which was most wrong exactly where
it had just been trained (BENCHMARKS.md, "Levers measured on the CPU that did not pay").
The uniform share keeps every tile visited.

With ``weighting=importance`` each sample's loss is weighted by (1/N) / q(x) (the draw's
density against uniform), so the expected gradient is the full signal's; ``none`` trains on the
plain mean, favouring the hard regions as NINT does.

Exact for any worker count: the map lives on every worker, updated from the residuals of the
whole selection (gathered in selection order, the same numbers on every worker), and the draw
comes from the (seed, step) generator.
"""

import math
from dataclasses import dataclass

import torch

from nint_dist.samplers.base import Sampler, Selection, SelectionContext
from nint_dist.schedules import num_selected, ratio_at
from nint_dist.selection import step_generator

SALT_DRAW = 0x3A9E


@dataclass
class ErrorMapConfig:
    """``sampler.error_map``: the tiles of the map and the draw from it."""

    tile_side: int = 0
    """Grid points per tile along each axis; 0 sizes tiles from the ratio so that a uniform
    batch puts about samples_per_tile samples in each."""
    samples_per_tile: float = 4.0
    """Samples per tile per step that the automatic tile size aims at."""
    decay: float = 0.5
    """Weight of a tile's earlier residuals each time it is trained on again."""
    power: float = 1.0
    """Tiles are drawn in proportion to size · (mean residual)^power."""
    uniform_share: float = 0.5
    """Share of the draw that is uniform over all coordinates."""
    weighting: str = "none"
    """'none' (plain mean over the draw) or 'importance' (each sample's loss weighted by its
    uniform density over its draw density: an unbiased full-signal gradient)."""

    def __post_init__(self):
        if self.tile_side < 0 or self.samples_per_tile <= 0 or not 0.0 <= self.decay <= 1.0:
            raise ValueError(
                "sampler.error_map.tile_side must be >= 0, sampler.error_map.samples_per_tile > 0"
                " and sampler.error_map.decay in [0, 1]"
            )
        if self.power < 0 or not 0.0 <= self.uniform_share <= 1.0:
            raise ValueError(
                "sampler.error_map.power must be >= 0 and sampler.error_map.uniform_share in [0, 1]"
            )
        if self.weighting not in ("none", "importance"):
            raise ValueError("sampler.error_map.weighting must be 'none' or 'importance'")


def tile_sides(grid: tuple[int, ...], ratio: float, samples_per_tile: float) -> tuple[int, ...]:
    """Grid points per tile along each axis: tiles of about samples_per_tile / ratio points
    (so a uniform batch puts about ``samples_per_tile`` samples in each), cube-shaped, at most
    the axis' size."""
    points = max(1.0, samples_per_tile / ratio)
    side = max(1, round(points ** (1.0 / len(grid))))
    return tuple(min(side, size) for size in grid)


def tiles_per_axis(grid: tuple[int, ...], sides: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(math.ceil(size / side) for size, side in zip(grid, sides, strict=True))


def tile_of(flat: torch.Tensor, grid: tuple[int, ...], sides: tuple[int, ...]) -> torch.Tensor:
    """Row-major tile id of row-major flat grid indices: [k] → [k]."""
    counts = tiles_per_axis(grid, sides)
    tile = torch.zeros_like(flat)
    rest, scale = flat, 1
    for axis in reversed(range(len(grid))):
        tile += (rest % grid[axis]) // sides[axis] * scale
        rest = rest // grid[axis]
        scale *= counts[axis]
    return tile


def tile_sizes(
    grid: tuple[int, ...], sides: tuple[int, ...], device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Grid points in each tile (edge tiles may be smaller): [T] float64."""
    sizes = torch.ones(1, dtype=torch.float64, device=device)
    for size, side, count in zip(grid, sides, tiles_per_axis(grid, sides), strict=True):
        extent = torch.full((count,), float(side), dtype=torch.float64, device=device)
        extent[-1] = size - side * (count - 1)
        sizes = (sizes[:, None] * extent[None, :]).reshape(-1)
    return sizes


def point_in_tile(
    tile: torch.Tensor, uniforms: torch.Tensor, grid: tuple[int, ...], sides: tuple[int, ...]
) -> torch.Tensor:
    """The grid point at relative position ``uniforms`` [k, D] in [0, 1) of each tile [k]: a
    uniform point of the tile for uniform inputs. Returns row-major flat indices [k]."""
    counts = tiles_per_axis(grid, sides)
    along = []
    rest = tile
    for axis in reversed(range(len(grid))):
        along.append(rest % counts[axis])
        rest = rest // counts[axis]
    along.reverse()
    flat = torch.zeros_like(tile)
    for axis, (size, side) in enumerate(zip(grid, sides, strict=True)):
        start = along[axis] * side
        extent = torch.clamp(size - start, max=side)
        offset = torch.clamp((uniforms[:, axis] * extent).long(), max=extent - 1)
        flat = flat * size + start + offset
    return flat


def tile_probabilities(
    estimate: torch.Tensor, sizes: torch.Tensor, random_share: float, power: float
) -> torch.Tensor:
    """Probability of each tile: random_share · size / N + (1 − random_share) · the tile's share
    of Σ size · estimate^power. [T] float64, summing to 1."""
    uniform = sizes / sizes.sum()
    mass = sizes * estimate.clamp_min(0).pow(power)
    total = mass.sum()
    usable = torch.isfinite(total) & (total > 0)  # no host round trip: decided on the device
    hard = torch.where(usable, mass / torch.where(usable, total, 1.0), uniform)
    return random_share * uniform + (1.0 - random_share) * hard


def draw_from_tiles(
    probabilities: torch.Tensor, count: int, generator: torch.Generator, dims: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` tiles drawn ∝ ``probabilities`` and a uniform position in each, from
    ``generator``: (tiles [count], ascending; positions [count, D]).

    Systematic sampling: the inverse CDF at (i + U) / count for one uniform U, so a tile of
    probability p gets floor(count·p) or ceil(count·p) samples, never the multinomial's spread
    (with uniform probabilities: every tile its share, a jittered grid)."""
    cdf = torch.cumsum(probabilities, 0)
    offset = torch.rand(1, generator=generator, dtype=torch.float64, device=generator.device)
    u = (torch.arange(count, dtype=torch.float64, device=generator.device) + offset) / count
    tiles = torch.searchsorted(cdf, u * cdf[-1], right=True).clamp_(max=probabilities.numel() - 1)
    positions = torch.rand((count, dims), generator=generator, dtype=torch.float64, device=generator.device)
    return tiles, positions


def update_map(
    sums: torch.Tensor, counts: torch.Tensor, tiles: torch.Tensor, errors: torch.Tensor, decay: float
) -> None:
    """In place: for every tile trained on, S ← decay·S + Σ errors, C ← decay·C + n."""
    touched = torch.zeros_like(counts).index_add_(0, tiles, torch.ones_like(errors, dtype=counts.dtype))
    factor = torch.where(touched > 0, decay, 1.0)
    sums.mul_(factor).index_add_(0, tiles, errors.to(sums.dtype))
    counts.mul_(factor).add_(touched)


class ErrorMap(Sampler):
    observes = True
    """The worker hands this sampler the residuals of every trained sample (``observe``)."""

    def __init__(self, cfg: ErrorMapConfig, common):
        super().__init__(cfg, common)
        self.sums: torch.Tensor | None = None
        self.counts: torch.Tensor | None = None
        self.prior: torch.Tensor | None = None
        self.sides: tuple[int, ...] | None = None
        self.sizes: torch.Tensor | None = None
        self.device = torch.device("cpu")

    def _setup(self, ctx: SelectionContext) -> None:
        grid = tuple(ctx.spec.grid)
        self.device = ctx.device
        if self.cfg.tile_side > 0:
            self.sides = tuple(min(self.cfg.tile_side, size) for size in grid)
        else:
            self.sides = tile_sides(grid, self.common.ratio, self.cfg.samples_per_tile)
        self.sizes = tile_sizes(grid, self.sides, self.device)
        if self.sums is None or self.sums.numel() != self.sizes.numel():
            self.sums = torch.zeros_like(self.sizes)
            self.counts = torch.zeros_like(self.sizes)
            self.prior = torch.ones((), dtype=torch.float64, device=self.device)
        else:  # restored from a checkpoint, possibly onto another device
            self.sums, self.counts = self.sums.to(self.device), self.counts.to(self.device)
            self.prior = self.prior.to(self.device)

    def estimate(self) -> torch.Tensor:
        """Per-tile mean residual; the latest batch's mean where a tile was never trained on."""
        seen = self.counts > 0
        return torch.where(seen, self.sums / self.counts.clamp_min(1e-300), self.prior)

    def select(self, ctx: SelectionContext, step: int) -> Selection:
        cfg, common = self.cfg, self.common
        if self.sides is None:
            self._setup(ctx)
        grid = tuple(ctx.spec.grid)
        ratio = ratio_at(common.ratio_schedule, common.ratio, step, ctx.total_steps)
        count = num_selected(ratio, ctx.num_points)
        probabilities = tile_probabilities(self.estimate(), self.sizes, cfg.uniform_share, cfg.power)
        generator = step_generator(ctx.seed + SALT_DRAW, step, self.device)
        tiles, positions = draw_from_tiles(probabilities, count, generator, len(grid))
        flat, order = torch.sort(point_in_tile(tiles, positions, grid, self.sides), stable=True)
        weights = None
        if cfg.weighting == "importance":
            density = probabilities[tiles[order]] / self.sizes[tiles[order]]  # per grid point
            weights = 1.0 / (ctx.num_points * density)
        return Selection(flat, {"map": count}, weights)

    def observe(self, ctx: SelectionContext, indices: torch.Tensor, errors: torch.Tensor) -> None:
        """Residuals mean_c |f − y| [k] of the trained samples at ``indices`` [k] (the whole
        selection, the same on every worker), measured by the training forward pass."""
        if self.sides is None:
            self._setup(ctx)
        errors = errors.detach().to(self.device, torch.float64)
        tiles = tile_of(indices.to(self.device), tuple(ctx.spec.grid), self.sides)
        update_map(self.sums, self.counts, tiles, errors, self.cfg.decay)
        if errors.numel():
            self.prior = errors.mean()

    def state_dict(self) -> dict:
        return {"sums": self.sums, "counts": self.counts, "prior": self.prior}

    def load_state_dict(self, state: dict) -> None:
        self.sums, self.counts, self.prior = state["sums"], state["counts"], state["prior"]
        self.sides = None  # placed on the run's device at the next step
