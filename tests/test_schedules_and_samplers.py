"""Schedules and the reference NINT sampler's rules on hand-made cases."""

import pytest
import torch

from nint_dist.config import SamplerConfig
from nint_dist.samplers.nint import SALT_EPOCHS, Nint, NintConfig
from nint_dist.samplers.nint_paper import NintPaper, NintPaperConfig, ntk_share_at
from nint_dist.samplers.simple import SALT_SHUFFLED, Shuffled
from nint_dist.schedules import num_selected, ratio_at, reselect_at
from nint_dist.selection import distinct_draw, epoch_order, random_picks, step_generator, topk_canonical


def test_ratio_schedules():
    assert ratio_at("constant", 0.2, 700, 1000) == 0.2
    assert ratio_at("linear", 0.2, 500, 1000) == pytest.approx(0.6)
    assert [round(ratio_at("step", 0.2, t, 5000), 2) for t in (0, 499, 500, 4999)] == [0.2, 0.2, 0.28, 0.92]


def test_intervals():
    total = 1000
    assert all(reselect_at("dense", t, total) for t in range(50))
    assert [t for t in range(12) if reselect_at("dense2", t, total)] == [0, 5, 10]
    incremental = [t for t in range(total) if reselect_at("incremental", t, total)]
    assert incremental[:250] == list(range(250))  # dense for the first 25%
    assert [t for t in incremental if 250 <= t < 400] == list(
        range(250, 400, 10)
    )  # interval 10 in [250, 400)
    assert [t for t in incremental if 850 <= t] == [850, 900, 950]  # interval 50 in the last phase
    decremental = [t for t in range(total) if reselect_at("decremental", t, total)]
    # the reference code's phases: intervals 40, 30, 20, 10, then dense, over the first 75%
    assert decremental[:6] == [0, 40, 80, 120, 150, 180] and decremental[-400:] == list(range(600, 1000))
    short = [t for t in range(200) if reselect_at("decremental", t, 200)]
    assert short[:9] == [0, 30, 60, 80, 90, 100, 110, 120, 121]
    # T = 777: dense to 194, then phases of (777 − 194) // 5 = 116 steps; 40 in [542, 658), 50 after
    assert [t for t in range(777) if reselect_at("incremental", t, 777)][-5:] == [560, 600, 640, 700, 750]


def test_ntk_share_follows_the_reference_codes_precedence():
    cfg = NintPaperConfig()
    got = [round(ntk_share_at(c, cfg), 4) for c in (1, 10, 20, 30, 40, 50)]
    assert got == [0.1104, 0.1104, 0.0406, 0.0149, 0.0055, 0.002]
    assert ntk_share_at(60, cfg) < cfg.ntk_cutoff <= ntk_share_at(50, cfg)
    paper = NintPaperConfig(share_rule="paper")
    assert ntk_share_at(10, paper) == pytest.approx(0.3 * 2.718281828**-1, rel=1e-6)


class HandContext:
    """A one-process selection context over explicit score vectors (unit test of the sampler)."""

    def __init__(self, n, total_steps=1000):
        self.num_points, self.total_steps, self.seed = n, total_steps, 0
        self.device = torch.device("cpu")
        g = torch.Generator().manual_seed(0)
        self.ntk = torch.rand(n, generator=g)
        self.res = torch.rand(n, generator=g)
        self.ntk_calls = 0

    def residual_l1(self, precision="full"):
        return self.res

    def ntk_scores(self):
        self.ntk_calls += 1
        return self.ntk

    def random_picks(self, count, exclude, step):
        return random_picks(self.num_points, count, exclude, step_generator(0, step))

    def global_topk(self, scores, k, exclude=None, indices=None, num_candidates=None):
        idx = torch.arange(self.num_points) if indices is None else indices
        if exclude is not None and exclude.numel():
            keep = ~torch.isin(idx, exclude)
            scores, idx = scores[keep], idx[keep]
        return topk_canonical(scores, idx, k)[1]

    # the pool-based sampler's primitives (one worker: it owns every row)
    def distinct_draw(self, count, step):
        return distinct_draw(self.num_points, count, step_generator(0, step))

    def local_part(self, indices):
        return indices, indices

    def residual_l1_at(self, rows, precision="full"):
        return self.res[rows]

    def ranking_precision(self, setting):
        return "full"

    def ntk_scores_at(self, rows, precision="full"):
        self.ntk_calls += 1
        return self.ntk[rows]


def test_nint_paper_composition_and_refresh():
    n = 10_000
    ctx = HandContext(n)
    sampler = NintPaper(NintPaperConfig(), SamplerConfig(ratio=0.2))
    first = sampler.select(ctx, 0)
    count = 2000
    num_ntk = int(count * 0.3 * 2.718281828459045**-1)  # 11% at the first call
    num_res = int(count * (1 - 0.3 * 2.718281828459045**-1 - 0.7))
    assert first.shares == {"ntk": num_ntk, "residual": num_res, "random": count - num_ntk - num_res}
    assert first.indices.numel() == count and torch.equal(first.indices, torch.sort(first.indices).values)
    top_ntk = set(torch.topk(ctx.ntk, num_ntk).indices.tolist())
    assert top_ntk <= set(first.indices.tolist())
    # NTK scores are refreshed at calls 1, 10, 20, ... and never once the share is below 1e-3
    for step in range(1, 120):
        sampler.select(ctx, step)
    assert ctx.ntk_calls == 6  # calls 1, 10, 20, 30, 40, 50
    assert sampler.select(ctx, 120).shares["ntk"] == 0


def test_nint_paper_reuses_ntk_picks_between_refreshes():
    ctx = HandContext(5000)
    sampler = NintPaper(NintPaperConfig(), SamplerConfig(ratio=0.2))
    cached = [sampler.select(ctx, 0) and sampler.ntk_cache.clone()]
    ctx.ntk = torch.rand(5000)  # changes that must not be seen before call 10
    for step in range(1, 9):
        sampler.select(ctx, step)
        assert torch.equal(sampler.ntk_cache, cached[0])
    sampler.select(ctx, 9)  # call 10: refresh
    assert not torch.equal(sampler.ntk_cache, cached[0])


def test_nint_ranks_a_pool_and_draws_its_uniform_picks_outside_it():
    n, count = 10_000, 2000
    ctx = HandContext(n)
    sampler = Nint(NintConfig(pool_factor=3.0, order="independent"), SamplerConfig(ratio=0.2))
    got = sampler.select(ctx, 0)
    draw = distinct_draw(n, 4 * count, step_generator(0, 0))  # the draw the sampler makes
    pool, rest = draw[: 3 * count], draw[3 * count :]
    share = 0.3 * 2.718281828459045**-1
    num_ntk, num_res = int(count * share), int(count * (1 - share - 0.7))
    assert got.shares == {"ntk": num_ntk, "residual": num_res, "random": count - num_ntk - num_res}
    ntk = pool[torch.topk(ctx.ntk[pool], num_ntk).indices]
    others = pool[~torch.isin(pool, ntk)]
    residual = others[torch.topk(ctx.res[others], num_res).indices]
    random = rest[~torch.isin(rest, ntk)][: count - num_ntk - num_res]
    expected = torch.sort(torch.cat([ntk, residual, random])).values
    assert torch.equal(got.indices, expected)
    assert not set(random.tolist()) & set(pool.tolist())
    # the NTK schedule is nint-paper's; its scores come from the pool
    for step in range(1, 120):
        sampler.select(ctx, step)
    assert ctx.ntk_calls == 6 and sampler.select(ctx, 120).shares["ntk"] == 0


def test_nint_in_epochs_takes_its_pool_and_picks_from_the_epoch_order():
    n = 10_000  # 1000 per step
    ctx = HandContext(n)
    sampler = Nint(NintConfig(pool_factor=2.0, ntk_share=0.0), SamplerConfig(ratio=0.1))
    seen = []
    for step in range(4):  # 3000 positions per step: the fourth step starts epoch 1
        got = sampler.select(ctx, step)
        epoch, start = (0, 3000 * step) if step < 3 else (1, 0)
        draw = epoch_order(SALT_EPOCHS, epoch, torch.arange(start, start + 3000), n)  # seed 0
        pool, rest = draw[:2000], draw[2000:]
        residual = pool[torch.topk(ctx.res[pool], 300).indices]  # 30%: the pool's largest residuals
        expected = torch.sort(torch.cat([residual, rest[:700]])).values
        assert torch.equal(got.indices, expected)
        seen.append(draw)
    assert torch.unique(torch.cat(seen[:3])).numel() == 9000  # no coordinate twice in an epoch
    resumed = Nint(NintConfig(pool_factor=2.0, ntk_share=0.0), SamplerConfig(ratio=0.1))
    resumed.load_state_dict(sampler.state_dict())
    assert torch.equal(resumed.select(ctx, 4).indices, sampler.select(ctx, 4).indices)


def test_shuffled_visits_every_coordinate_once_per_epoch():
    n, count = 1003, 100
    ctx = HandContext(n)
    sampler = Shuffled(None, SamplerConfig(ratio=count / n))
    epoch0 = torch.cat([sampler.select(ctx, step).indices for step in range(10)])
    assert torch.unique(epoch0).numel() == 1000  # ten steps, no repeat
    epoch1 = sampler.select(ctx, 10).indices  # 3 left: the next epoch starts, in a new order
    assert torch.equal(epoch1, torch.sort(epoch_order(SALT_SHUFFLED, 1, torch.arange(100), n)).values)
    assert not torch.equal(torch.sort(epoch0[:100]).values, epoch1)


def test_nint_ranks_all_coordinates_when_the_pool_would_not_fit():
    ctx = HandContext(1000)
    pooled = Nint(NintConfig(pool_factor=3.0), SamplerConfig(ratio=0.3)).select(ctx, 0)  # 900 + 300 > 1000
    reference = NintPaper(NintPaperConfig(), SamplerConfig(ratio=0.3)).select(HandContext(1000), 0)
    assert torch.equal(pooled.indices, reference.indices)


def test_num_selected():
    assert num_selected(0.2, 1000) == 200 and num_selected(1e-9, 10) == 1 and num_selected(1.0, 7) == 7


def test_dense2_interval_reuses_selection():
    ctx = HandContext(1000)
    sampler = NintPaper(NintPaperConfig(), SamplerConfig(interval="dense2"))
    a = sampler.select(ctx, 0)
    assert sampler.select(ctx, 3) is a and sampler.select(ctx, 5) is not a
