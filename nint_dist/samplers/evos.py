"""``evos``: EVOlutionary Selector (Zhang et al., "Efficient Implicit Neural Training via
EVOlutionary Selector", CVPR 2025), without its cross-frequency supervision loss.

Steps count t = 1..T as in EVOS's code. The fitness interval falls linearly from 100 to 50
(``int(100 − 50·t/T)``); a step with t mod interval = 1 is a fitness step: it trains on all N
coordinates and ranks them. Fitness e_i = mean_c (f − y)² in [−1, 1] units; q_i = λ·(Lap(grey
f) − Lap(grey y))² with the 3×3 Laplacian in 0–255 units (λ = 1e-5). Crossover "select": n =
N − int((1 − r_t + m)·N) elite slots; the intersection I of the top-n by e and the top-n by q,
then the best of the top-n by e outside I and of the top-n by q outside I, split in proportion
mean(e) : mean(q). Other steps train on the last int((r_t − m)·N) entries of the cached ranking
(non-elite by e ascending, then the elite) plus int(m·N) uniform picks from the rest, drawn
afresh every step (mutation, m = 0.5·r0).

Exact for any worker count: every top-n is the exact global top-k, the means are all-reduced,
the Laplacian of a shard is taken with one halo row of each neighbour. Deliberate differences:
the cross-frequency supervision term (a Laplacian loss on a composite image) is not
implemented, so this is the paper's "EVOS w/o CFS"; the fitness pass is a separate forward over
N before the full-batch step (the port reuses that step's forward), a small extra cost every
~70 steps.
"""

from dataclasses import dataclass

import torch

from nint_dist.samplers.base import Sampler, Selection, SelectionContext
from nint_dist.samplers.egra import grey_luma, image_rows, laplacian, local_block
from nint_dist.schedules import ratio_at
from nint_dist.selection import isin_sorted


@dataclass
class EvosConfig:
    """``sampler.evos``: the fitness schedule, the mutation share and the crossover ranking."""

    interval_start: int = 100
    """Steps between fitness evaluations at the start; falls linearly to interval_end."""
    interval_end: int = 50
    """Steps between fitness evaluations at the end."""
    mutation: float = 0.5
    """Mutation share of every batch, as a fraction of the initial ratio (m = this * ratio)."""
    lap_weight: float = 1e-5
    """Weight of the Laplacian error in the crossover ranking (8-bit units)."""

    def __post_init__(self):
        if self.interval_end < 1 or self.interval_start < self.interval_end:
            raise ValueError("sampler.evos.interval_start must be >= sampler.evos.interval_end >= 1")
        if not 0.0 <= self.mutation < 1.0:
            raise ValueError("sampler.evos.mutation must be in [0, 1)")


def fitness_interval(t: int, total_steps: int, start: int, end: int) -> int:
    """Steps between fitness evaluations at step t (1-based): int(start − (start − end)·t/T)."""
    return max(1, int(start - (start - end) * t / max(total_steps, 1)))


def is_fitness_step(t: int, total_steps: int, start: int, end: int) -> bool:
    interval = fitness_interval(t, total_steps, start, end)
    return interval == 1 or t % interval == 1


def num_elite(ratio: float, mutation: float, num_points: int) -> int:
    """Elite slots n = N − int((1 − r + m)·N)."""
    return num_points - int((1.0 - ratio + mutation) * num_points)


def fitness_maps(ctx: SelectionContext, lap_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """This worker's (e, q): per-pixel MSE in [−1, 1] units and weighted squared Laplacian
    error in 0–255 units, [n_local] each. Collective."""
    predicted = image_rows(ctx, ctx.local_values(predicted=True).detach())
    target = image_rows(ctx, ctx.local_values(predicted=False))
    e = 4.0 * (predicted - target).pow(2).mean(dim=-1)
    pred_block, own = local_block(ctx, grey_luma(predicted), 1)
    target_block, _ = local_block(ctx, grey_luma(target), 1)
    q = lap_weight * (laplacian(pred_block) - laplacian(target_block))[own].pow(2)
    return e.reshape(-1).to(torch.float64), q.reshape(-1)


class Evos(Sampler):
    needs_image = True

    def __init__(self, cfg: EvosConfig, common):
        super().__init__(cfg, common)
        self.elite: torch.Tensor | None = None
        self.fitness: torch.Tensor | None = None

    def crossover(self, ctx: SelectionContext, ratio: float) -> None:
        cfg = self.cfg
        m = cfg.mutation * self.common.ratio
        e, q = fitness_maps(ctx, cfg.lap_weight)
        n = num_elite(ratio, m, ctx.num_points)
        top_e = ctx.global_topk(e, n)
        top_q = ctx.global_topk(q, n)
        both = top_e[isin_sorted(top_e, torch.sort(top_q).values)]
        rest = n - both.numel()
        sums = ctx.global_sum(torch.stack([e.sum(), q.sum()]))
        mean_e, mean_q = float(sums[0]), float(sums[1])
        share_e = mean_e / (mean_e + mean_q) if mean_e + mean_q > 0 else 1.0
        num_e = min(int(rest * share_e), rest)
        from_e = ctx.global_topk(e, num_e, exclude=both)
        from_q = ctx.global_topk(q, rest - num_e, exclude=both)
        self.elite = torch.cat([both, from_e, from_q])
        self.fitness = e

    def select(self, ctx: SelectionContext, step: int) -> Selection:
        cfg, common = self.cfg, self.common
        t = step + 1
        ratio = ratio_at(common.ratio_schedule, common.ratio, step, ctx.total_steps)
        if self.elite is None or is_fitness_step(t, ctx.total_steps, cfg.interval_start, cfg.interval_end):
            self.crossover(ctx, ratio)
            return Selection.from_parts(fitness=ctx.arange())
        m = cfg.mutation * common.ratio
        take = min(int((ratio - m) * ctx.num_points), ctx.num_points)
        if take <= self.elite.numel():
            kept = self.elite[self.elite.numel() - take :]
        else:  # the ratio grew since the last fitness step: the next best by cached fitness
            kept = torch.cat(
                [self.elite, ctx.global_topk(self.fitness, take - self.elite.numel(), self.elite)]
            )
        num_mutation = min(int(m * ctx.num_points), ctx.num_points - kept.numel())
        return Selection.from_parts(elite=kept, mutation=ctx.random_picks(num_mutation, kept, step))

    def state_dict(self) -> dict:
        return {"elite": self.elite, "fitness": self.fitness}

    def load_state_dict(self, state: dict) -> None:
        self.elite, self.fitness = state.get("elite"), state.get("fitness")
