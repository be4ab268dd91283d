"""``expansive``: Expansive Supervision (Zhang et al., ICME 2025), in the form EVOS's code
ports it to image INRs.

Once, an anchor set of content-aware pixels: τ = Otsu threshold of the 8-bit grey image;
Canny edges with low 0.5·τ and high θ·τ, where θ starts at 1 and is multiplied by
1 + 15·(a − α) while the edge area a is outside [0.8α, 1.2α] (at most 100 tries); a 2×2
dilation; if the area then exceeds α, randomly chosen anchors are switched off until
floor(α·N) remain. α = ``anchor`` · r0 (0.5·r0 in the port). Every re-selection trains
on all anchors plus k_t − |anchors| pixels drawn uniformly from the rest; plain MSE.

Exact for any worker count: Otsu's histogram and every edge area are all-reduced sums, the edge
map is computed on a shard plus a halo, and the anchors switched off are those with the
smallest hashed keys. Deliberate differences: Canny's hysteresis is bounded (see ``egra``);
the original NeRF method's expansion weights are not used, as in the INR port.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nint_dist.samplers.base import ScheduledSampler, Selection, SelectionContext
from nint_dist.samplers.egra import canny, grey_8bit, image_rows, local_block
from nint_dist.selection import index_uniforms

SALT_ANCHOR = 0xE9A1
MAX_TRIES = 100


@dataclass
class ExpansiveConfig:
    """``sampler.expansive``: the anchor set."""

    anchor: float = 0.5
    """Anchor (edge) area as a fraction of the initial ratio."""
    hysteresis_px: int = 16
    """How far (in pixels) Canny's hysteresis follows a weak edge from a strong one."""

    def __post_init__(self):
        if not 0.0 <= self.anchor <= 1.0 or self.hysteresis_px < 0:
            raise ValueError(
                "sampler.expansive.anchor must be in [0, 1] and sampler.expansive.hysteresis_px >= 0"
            )


def otsu_threshold(histogram: torch.Tensor) -> float:
    """Otsu's threshold t of a 256-bin histogram: pixels > t are foreground; maximises the
    between-class variance (the first maximum on ties)."""
    hist = histogram.to(torch.float64)
    levels = torch.arange(hist.numel(), dtype=torch.float64, device=hist.device)
    total = hist.sum()
    weight_low = torch.cumsum(hist, 0)
    mean_low_sum = torch.cumsum(hist * levels, 0)
    weight_high = total - weight_low
    mean_total = mean_low_sum[-1]
    valid = (weight_low > 0) & (weight_high > 0)
    mu_low = mean_low_sum / weight_low.clamp_min(1e-300)
    mu_high = (mean_total - mean_low_sum) / weight_high.clamp_min(1e-300)
    between = torch.where(valid, weight_low * weight_high * (mu_low - mu_high) ** 2, torch.zeros_like(hist))
    return float(torch.argmax(between))


def dilate_2x2(edges: torch.Tensor) -> torch.Tensor:
    """OpenCV's dilation with a 2×2 rectangle (anchor at its centre (1, 1)): a pixel is set if
    it or its upper, left or upper-left neighbour is. bool [H, W] → bool [H, W]."""
    padded = F.pad(edges[None, None].float(), (1, 0, 1, 0))
    return F.max_pool2d(padded, 2, 1)[0, 0] > 0


def anchor_mask(ctx: SelectionContext, hysteresis_px: int, area: float) -> torch.Tensor:
    """This worker's anchor pixels before trimming: bool [n_local]. Collective."""
    halo = hysteresis_px + 3
    rows = image_rows(ctx, ctx.local_values(predicted=False))
    grey_rows = grey_8bit(rows)
    block, own = local_block(ctx, grey_rows, halo)
    hist = torch.bincount(grey_rows.reshape(-1).long(), minlength=256).to(torch.float64)
    tau = otsu_threshold(ctx.global_sum(hist))
    theta = 1.0
    for _ in range(MAX_TRIES):
        edges = canny(block, 0.5 * tau, theta * tau, hysteresis_px)
        found = float(ctx.global_sum(edges[own].sum().to(torch.float64))) / ctx.num_points
        if 0.8 * area <= found <= 1.2 * area:
            break
        theta *= 1.0 + 15.0 * (found - area)
    first = own.start - 1 if own.start else 0  # the row above ours, when a neighbour has it
    return dilate_2x2(edges[first : own.stop])[own.start - first :].reshape(-1)


class Expansive(ScheduledSampler):
    needs_image = True

    def __init__(self, cfg: ExpansiveConfig, common):
        super().__init__(cfg, common)
        self.anchors: torch.Tensor | None = None

    def build_anchors(self, ctx: SelectionContext) -> torch.Tensor:
        area = self.cfg.anchor * self.common.ratio
        mask = anchor_mask(ctx, self.cfg.hysteresis_px, area)
        total = int(ctx.global_sum(mask.sum().to(torch.float64)))
        lo, hi = ctx.local_range()
        keys = index_uniforms(ctx.seed, 0, SALT_ANCHOR, torch.arange(lo, hi, device=mask.device))
        keys = torch.where(mask, keys, torch.full_like(keys, float("-inf")))
        return torch.sort(ctx.global_topk(keys, min(total, math.floor(area * ctx.num_points)))).values

    def draw(self, ctx: SelectionContext, step: int, count: int) -> Selection:
        if self.anchors is None:
            self.anchors = self.build_anchors(ctx)
        rest = max(0, count - self.anchors.numel())
        return Selection.from_parts(anchor=self.anchors, random=ctx.random_picks(rest, self.anchors, step))

    def state_dict(self) -> dict:
        return {**super().state_dict(), "anchors": self.anchors}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.anchors = state.get("anchors")
