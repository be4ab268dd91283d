"""The ``error-map`` sampler: its tile arithmetic on hand-made grids, the draw against the
probabilities it claims, the map update on a hand case, and the training pass's residuals that
the worker hands it against an independent forward pass."""

import math

import numpy as np
import torch

from nint_dist.config import SamplerConfig, load_config
from nint_dist.samplers import build_sampler
from nint_dist.samplers.error_map import (
    ErrorMapConfig,
    draw_from_tiles,
    point_in_tile,
    tile_of,
    tile_probabilities,
    tile_sides,
    tile_sizes,
    update_map,
)
from nint_dist.samplers.nint import NintConfig
from nint_dist.selection import balanced_bounds
from nint_dist.signal import flat_to_coords, to_unit
from nint_dist.worker import Runtime, Trainer
from tests.helpers import make_tiny_signal
from tests.test_baselines import HandContext

GRID, SIDES = (5, 7), (3, 3)  # 2 × 3 tiles; the last row and column of tiles are cut short


def test_tiles_of_a_grid_with_cut_edges():
    rows, cols = np.mgrid[0:5, 0:7]
    expected = (rows // 3) * 3 + cols // 3  # tile row · tiles per row + tile column
    flat = torch.arange(35)
    assert torch.equal(tile_of(flat, GRID, SIDES), torch.from_numpy(expected.reshape(-1)))
    sizes = tile_sizes(GRID, SIDES)
    assert sizes.tolist() == [9, 9, 3, 6, 6, 2]
    assert sizes.tolist() == np.bincount(expected.reshape(-1)).tolist()


def test_point_in_tile_stays_inside_and_covers_it():
    tiles = torch.arange(6).repeat_interleave(400)
    uniforms = torch.rand((tiles.numel(), 2), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    flat = point_in_tile(tiles, uniforms, GRID, SIDES)
    assert torch.equal(tile_of(flat, GRID, SIDES), tiles)
    assert torch.unique(flat).numel() == 35  # every grid point reached
    corner = point_in_tile(
        torch.tensor([5]), torch.tensor([[0.999999, 0.999999]], dtype=torch.float64), GRID, SIDES
    )
    assert corner.item() == 34


def test_tile_sides_aim_at_samples_per_tile():
    assert tile_sides((1280, 2048), 0.01, 4.0) == (20, 20)  # 400 points: 4 samples at 1%
    assert tile_sides((88200,), 0.2, 4.0) == (20,)
    assert tile_sides((64, 64, 64), 0.2, 4.0) == (3, 3, 3)
    assert tile_sides((4, 4), 0.001, 4.0) == (4, 4)  # never past the grid


def test_probabilities_mix_uniform_and_error_mass():
    sizes = tile_sizes(GRID, SIDES)
    estimate = torch.tensor([1.0, 0.0, 2.0, 0.0, 0.0, 4.0], dtype=torch.float64)
    p = tile_probabilities(estimate, sizes, 0.25, 1.0)
    mass = sizes * estimate  # 9, 0, 6, 0, 0, 8
    assert torch.allclose(p, 0.25 * sizes / 35 + 0.75 * mass / 23, rtol=1e-15)
    assert math.isclose(float(p.sum()), 1.0, rel_tol=1e-12)
    squared = tile_probabilities(estimate, sizes, 0.0, 2.0)
    assert torch.allclose(squared, sizes * estimate**2 / float((sizes * estimate**2).sum()))
    assert torch.allclose(tile_probabilities(torch.full((6,), 3.0), sizes, 0.5, 1.0), sizes / 35)
    assert torch.allclose(tile_probabilities(torch.zeros(6), sizes, 0.5, 1.0), sizes / 35)  # nothing known


def test_draw_follows_the_probabilities():
    p = torch.tensor([0.5, 0.0, 0.2, 0.3], dtype=torch.float64)
    tiles, positions = draw_from_tiles(p, 200_000, torch.Generator().manual_seed(3), 2)
    counts = torch.bincount(tiles, minlength=4)
    assert torch.all((counts - 200_000 * p).abs() <= 1)  # systematic: the expected count, rounded
    assert torch.all(tiles[1:] >= tiles[:-1])
    assert positions.shape == (200_000, 2) and 0 <= positions.min() and positions.max() < 1


def test_map_update_decays_only_the_tiles_trained_on():
    sums = torch.tensor([4.0, 2.0, 6.0], dtype=torch.float64)
    counts = torch.tensor([2.0, 1.0, 3.0], dtype=torch.float64)
    update_map(sums, counts, torch.tensor([0, 0, 2]), torch.tensor([1.0, 3.0, 0.5]), 0.5)
    assert sums.tolist() == [4.0 * 0.5 + 4.0, 2.0, 6.0 * 0.5 + 0.5]
    assert counts.tolist() == [2.0 * 0.5 + 2, 1.0, 3.0 * 0.5 + 1]


def _sampler(ratio, **settings):
    return build_sampler(SamplerConfig(name="error-map", ratio=ratio, error_map=ErrorMapConfig(**settings)))


def test_selection_starts_uniform_then_follows_the_map():
    ctx = HandContext((30, 40), seed=5)
    sampler = _sampler(ratio=0.1, tile_side=10, uniform_share=0.0)
    first = sampler.select(ctx, 0)
    assert first.indices.numel() == 120 and torch.all(first.indices[1:] >= first.indices[:-1])
    # residuals: 1 in the top-left tile, 0 elsewhere; every tile is seen once
    tiles = tile_of(torch.arange(1200), (30, 40), (10, 10))
    every = torch.arange(1200)
    sampler.observe(ctx, every, (tiles == 0).double())
    second = sampler.select(ctx, 1)
    assert torch.all(tile_of(second.indices, (30, 40), (10, 10)) == 0)


def test_importance_weights_are_uniform_over_draw_density():
    ctx = HandContext((30, 40), seed=5)
    sampler = _sampler(ratio=0.5, tile_side=10, uniform_share=0.5, weighting="importance")
    tiles = tile_of(torch.arange(1200), (30, 40), (10, 10))
    sampler.observe(ctx, torch.arange(1200), (tiles == 0).double() * 3.0)
    sel = sampler.select(ctx, 1)
    in_hot = tile_of(sel.indices, (30, 40), (10, 10)) == 0
    # tile 0: q = 0.5/12 + 0.5 per 100 points; elsewhere 0.5/12 per 100 points; w = (1/1200)/q
    hot_w, cold_w = (1 / 1200) / ((0.5 / 12 + 0.5) / 100), (1 / 1200) / ((0.5 / 12) / 100)
    assert torch.allclose(sel.weights[in_hot], torch.full((int(in_hot.sum()),), hot_w, dtype=torch.float64))
    assert torch.allclose(
        sel.weights[~in_hot], torch.full((int((~in_hot).sum()),), cold_w, dtype=torch.float64)
    )


def test_state_round_trip_continues_identically():
    ctx = HandContext((30, 40), seed=5)
    a = _sampler(ratio=0.1, tile_side=10)
    a.select(ctx, 0)
    a.observe(
        ctx, torch.arange(0, 1200, 7), torch.linspace(0, 1, len(range(0, 1200, 7)), dtype=torch.float64)
    )
    b = _sampler(ratio=0.1, tile_side=10)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.select(ctx, 1).indices, b.select(ctx, 1).indices)


def test_worker_hands_the_training_residuals_to_the_sampler(tmp_path):
    signal = make_tiny_signal(tmp_path)
    (tmp_path / "run").mkdir()
    cfg = load_config(
        None,
        [
            f"data.path={signal}",
            f"run.dir={tmp_path / 'run'}",
            "sampler.name=error-map",
            "sampler.ratio=0.3",
            "sampler.error_map.tile_side=4",
            "model.layers=3",
            "model.width=16",
            "train.micro_batch=50",  # 144 samples in 3 passes
            "log.tensorboard=false",
        ],
    )
    trainer = Trainer(cfg, Runtime(0, 1, torch.device("cpu")))
    seen = {}
    observe = trainer.sampler.observe

    def spy(ctx, indices, errors):
        seen["indices"], seen["errors"] = indices.clone(), errors.clone()
        observe(ctx, indices, errors)

    trainer.sampler.observe = spy
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    sel, _ = trainer.train_step()
    after = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.model.load_state_dict(before)  # the residuals are those of the parameters trained from
    with torch.no_grad():
        predicted = trainer.model(flat_to_coords(sel.indices, trainer.spec, trainer.dtype))
    target = to_unit(trainer.shard.values[sel.indices], trainer.spec, trainer.dtype)
    assert torch.equal(seen["indices"], sel.indices)
    assert torch.allclose(seen["errors"], (predicted - target).abs().mean(dim=-1), rtol=1e-5, atol=1e-6)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert balanced_bounds(sel.indices.numel(), 1, 0) == (0, 144)
    assert trainer.sampler.counts.sum().item() == 144


def test_nint_skips_the_ntk_share_on_signals_above_ntk_max_points(tmp_path):
    from tests.test_baselines import _context

    signal = make_tiny_signal(tmp_path)  # 480 points
    for limit, expect_ntk in ((1000, True), (479, False)):
        ctx = _context(signal, 0, 1)
        cfg = SamplerConfig(name="nint", ratio=0.2, nint=NintConfig(ntk_max_points=limit))
        sel = build_sampler(cfg).select(ctx, 0)
        assert sel.indices.numel() == 96
        assert ("ntk_pool" in ctx.last_scores) == expect_ntk
        assert (sel.shares["ntk"] > 0) == expect_ntk
        # no NTK share: the residual share is 1 − random_share of the batch
        assert expect_ntk or sel.shares["residual"] == int(96 * 0.3)
