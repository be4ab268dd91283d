"""``egra``: edge-guided sampling after EGRA-NeRF (Edge-Guided Ray Allocation for Neural
Radiance Fields, Image and Vision Computing 2023), as ported to image INRs by EVOS's code.

Once: a binary Canny edge map of the 8-bit grey image (thresholds 30/40 on the L1 Sobel
magnitude). At every re-selection every edge pixel is shifted by a random 6–9 positions along
the flattened raster order (a band around the edges, wrapping into the next row); a pixel's
weight is ``p_e · [in the band] + (1 − p_e) · 0.0064`` (p_e = 0.0025: the ports' NeRF constants,
an edge-band pixel is only about 1.4× as likely as any other), and k_t pixels are drawn without
replacement with probability ∝ weight. Plain MSE on the draw.

Exact for any worker count: the shift of pixel i and the draw's key of pixel i are hashes of
(seed, step, i), the draw is an Efraimidis–Spirakis top-k through the exact global top-k, and
the edge map of a shard is computed on its rows plus a halo of the neighbours' rows. Where this
differs from OpenCV on purpose: hysteresis follows a weak edge at most ``hysteresis_px``
pixels from a strong one (a local operator, so a shard plus a finite halo sees exactly what one
process sees); OpenCV follows it without bound.

This module also holds the edge arithmetic shared with ``expansive`` and ``soft``: pure
functions of [rows, W] tensors.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nint_dist.samplers.base import ScheduledSampler, Selection, SelectionContext
from nint_dist.selection import index_uniforms

SALT_SHIFT, SALT_DRAW = 0xE6A1, 0xE6A2
SHIFT_MIN, SHIFT_SPAN = 6, 4  # shifts 6, 7, 8, 9
_TAN_22_5 = math.tan(math.radians(22.5))
_TAN_67_5 = math.tan(math.radians(67.5))


def grey_8bit(rgb: torch.Tensor) -> torch.Tensor:
    """8-bit grey levels (OpenCV's RGB→grey weights, rounded) of values in [0, 1]: [..., C] → [...]."""
    if rgb.shape[-1] == 1:
        return torch.round(rgb[..., 0].clamp(0, 1) * 255.0)
    levels = torch.round(rgb[..., :3].clamp(0, 1) * 255.0).to(torch.float64)
    return torch.round(levels @ torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64, device=rgb.device))


def grey_luma(rgb: torch.Tensor) -> torch.Tensor:
    """Grey 0.2989 R + 0.587 G + 0.114 B in 0–255 units, unrounded (EVOS, soft mining): [..., C] → [...]."""
    if rgb.shape[-1] == 1:
        return rgb[..., 0].to(torch.float64) * 255.0
    weights = torch.tensor([0.2989, 0.587, 0.114], dtype=torch.float64, device=rgb.device)
    return (rgb[..., :3].clamp(0, 1).to(torch.float64) * 255.0) @ weights


def _conv3x3(image: torch.Tensor, kernel: list[list[float]], padding: str) -> torch.Tensor:
    weight = torch.tensor(kernel, dtype=image.dtype, device=image.device)[None, None]
    padded = F.pad(image[None, None], (1, 1, 1, 1), mode=padding)
    return F.conv2d(padded, weight)[0, 0]


def sobel(grey: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """3×3 Sobel derivatives (x along columns, y along rows), borders replicated: [H, W] each."""
    gx = _conv3x3(grey, [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], "replicate")
    gy = _conv3x3(grey, [[-1, -2, -1], [0, 0, 0], [1, 2, 1]], "replicate")
    return gx, gy


def laplacian(image: torch.Tensor) -> torch.Tensor:
    """The 3×3 Laplacian [0 1 0; 1 −4 1; 0 1 0] with zero padding: [H, W] → [H, W]."""
    return _conv3x3(image, [[0, 1, 0], [1, -4, 1], [0, 1, 0]], "constant")


def canny(grey: torch.Tensor, low: float, high: float, hysteresis_px: int) -> torch.Tensor:
    """Binary Canny edges of a grey image [H, W] (OpenCV's rules: L1 Sobel magnitude, 4-direction
    non-maximum suppression, strong > high, weak > low, thresholds swapped if low > high), with
    hysteresis followed at most ``hysteresis_px`` steps (8-connected). Returns bool [H, W].

    Output rows within ``hysteresis_px + 2`` of a cut edge of the image depend on the cut; run
    it on a block with that many halo rows to get exact values for the rows inside."""
    low, high = min(low, high), max(low, high)
    grey = grey.to(torch.float64)
    gx, gy = sobel(grey)
    mag = gx.abs() + gy.abs()
    padded = F.pad(mag[None, None], (1, 1, 1, 1))[0, 0]

    def shifted(dr: int, dc: int) -> torch.Tensor:
        h, w = mag.shape
        return padded[1 + dr : 1 + dr + h, 1 + dc : 1 + dc + w]

    ax, ay = gx.abs(), gy.abs()
    horizontal = ay < ax * _TAN_22_5
    vertical = ~horizontal & (ay > ax * _TAN_67_5)
    diagonal = ~horizontal & ~vertical
    same_sign = (gx * gy) >= 0  # s = +1: neighbours (r−1, c−1) and (r+1, c+1)
    keep_h = (mag > shifted(0, -1)) & (mag >= shifted(0, 1))
    keep_v = (mag > shifted(-1, 0)) & (mag >= shifted(1, 0))
    keep_d = torch.where(
        same_sign,
        (mag > shifted(-1, -1)) & (mag > shifted(1, 1)),
        (mag > shifted(-1, 1)) & (mag > shifted(1, -1)),
    )
    maximum = (horizontal & keep_h) | (vertical & keep_v) | (diagonal & keep_d)
    weak = maximum & (mag > low)
    edges = weak & (mag > high)
    for _ in range(hysteresis_px):
        grown = weak & (F.max_pool2d(edges[None, None].float(), 3, 1, 1)[0, 0] > 0)
        if torch.equal(grown, edges):
            break
        edges = grown
    return edges


def image_rows(ctx: SelectionContext, values: torch.Tensor) -> torch.Tensor:
    """A worker's [n_local, C] values as image rows [rows, W, C]; images (2-D grids) only."""
    grid = ctx.spec.grid
    if len(grid) != 2:
        raise ValueError(f"this sampler needs a 2-D image signal, not a grid of shape {tuple(grid)}")
    return values.reshape(-1, grid[1], values.shape[-1])


def local_block(ctx: SelectionContext, rows: torch.Tensor, halo: int) -> tuple[torch.Tensor, slice]:
    """Rows plus up to ``halo`` rows from each side; the slice picks this worker's own rows. Collective."""
    block, top, _ = ctx.halo(rows, halo, halo)
    return block, slice(top, top + rows.shape[0])


def canny_local(ctx: SelectionContext, low: float, high: float, hysteresis_px: int, extra: int = 0):
    """Canny edges of the target image on this worker's rows (bool [rows + 2·extra', W] with up
    to ``extra`` exact rows of the neighbours kept around them, and the slice of the own rows).
    Collective."""
    rows = image_rows(ctx, ctx.local_values(predicted=False))
    block, own = local_block(ctx, grey_8bit(rows), hysteresis_px + 2 + extra)
    edges = canny(block, low, high, hysteresis_px)
    lo, hi = max(0, own.start - extra), min(block.shape[0], own.stop + extra)
    return edges[lo:hi], slice(own.start - lo, own.stop - lo)


def shifted_band(ctx: SelectionContext, edges_flat: torch.Tensor, step: int) -> torch.Tensor:
    """EGRA's per-step band: every edge pixel i marks pixel (i + δ_i) mod N, δ_i ∈ {6, …, 9}
    hashed from (seed, step, i). Input and output are this worker's bool [n_local]. Collective."""
    lo, hi = ctx.local_range()
    block, top, _ = ctx.halo(edges_flat, SHIFT_MIN + SHIFT_SPAN - 1, 0, wrap=True)
    position = torch.arange(block.numel(), device=block.device) - top
    source = (position + lo) % ctx.num_points
    delta = SHIFT_MIN + torch.floor(SHIFT_SPAN * index_uniforms(ctx.seed, step, SALT_SHIFT, source)).long()
    target = position + delta
    hit = block.bool() & (target >= 0) & (target < hi - lo)
    band = torch.zeros(hi - lo, dtype=torch.bool, device=block.device)
    band[target[hit]] = True
    return band


@dataclass
class EgraConfig:
    """``sampler.egra``: the edge map and the weights of the draw."""

    edge_low: float = 30.0
    """Canny's low threshold on the 8-bit grey image's L1 Sobel magnitude."""
    edge_high: float = 40.0
    """Canny's high threshold (same units)."""
    hysteresis_px: int = 16
    """How far (in pixels) Canny's hysteresis follows a weak edge from a strong one."""
    edge_prob: float = 0.0025
    """Weight of an edge-band pixel on top of the base weight (the ports' p_e)."""
    base_prob: float = 0.0064
    """Base weight of every pixel, times (1 − edge_prob) (the ports' B_ref / N_ref)."""

    def __post_init__(self):
        if self.hysteresis_px < 0:
            raise ValueError("sampler.egra.hysteresis_px must be >= 0")
        if not 0.0 <= self.edge_prob <= 1.0 or self.base_prob < 0:
            raise ValueError("sampler.egra.edge_prob must be in [0, 1] and sampler.egra.base_prob >= 0")


class Egra(ScheduledSampler):
    needs_image = True

    def __init__(self, cfg: EgraConfig, common):
        super().__init__(cfg, common)
        self.edges: torch.Tensor | None = None  # recomputed after a resume (a function of the signal)

    def draw(self, ctx: SelectionContext, step: int, count: int) -> Selection:
        cfg = self.cfg
        if self.edges is None:
            edges, own = canny_local(ctx, cfg.edge_low, cfg.edge_high, cfg.hysteresis_px)
            self.edges = edges[own].reshape(-1)
        band = shifted_band(ctx, self.edges, step).to(torch.float64)
        weights = cfg.edge_prob * band + (1.0 - cfg.edge_prob) * cfg.base_prob
        return Selection.from_parts(weighted=ctx.weighted_picks(weights, count, None, step, SALT_DRAW))
