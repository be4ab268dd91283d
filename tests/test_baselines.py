"""The baselines (int, egra, soft, evos, expansive): each rule on a hand-made case, their new
primitives against single-process computations, and their selections with 2 and 3 real gloo
workers against one process."""

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from nint_dist import selection
from nint_dist.comm import Comm
from nint_dist.config import ModelConfig, SamplerConfig
from nint_dist.models import build_model
from nint_dist.samplers import SAMPLERS, build_sampler
from nint_dist.samplers.egra import EgraConfig, canny, grey_8bit, laplacian, shifted_band
from nint_dist.samplers.error_map import ErrorMapConfig
from nint_dist.samplers.evos import Evos, EvosConfig, fitness_interval, is_fitness_step, num_elite
from nint_dist.samplers.expansive import ExpansiveConfig, dilate_2x2, otsu_threshold
from nint_dist.samplers.int_sampler import ErrorTopK
from nint_dist.samplers.soft import SoftConfig, positions_to_flat, soft_weights
from nint_dist.samplers.stratified import SALT_STRATUM, StratifiedConfig
from nint_dist.shard import ShardContext, load_shard
from nint_dist.signal import open_signal
from nint_dist.training.exchange import gather_parts
from tests.helpers import free_port, launch_fit, leave_spawned_rank

# ---------------------------------------------------------------- a one-process context by hand


class HandContext:
    """The SelectionContext over explicit per-coordinate values (one worker, no model)."""

    def __init__(self, grid, seed=0, total_steps=100):
        self.spec = type("Spec", (), {"grid": grid, "domain": ((-1.0, 1.0),) * len(grid)})()
        self.num_points = int(np.prod(grid))
        self.total_steps, self.seed = total_steps, seed
        self.device = torch.device("cpu")
        self.residual = torch.zeros(self.num_points)
        self.predicted = self.target = torch.zeros(self.num_points, 3)

    def arange(self):
        return torch.arange(self.num_points)

    def residual_l1(self):
        return self.residual

    def local_range(self):
        return 0, self.num_points

    def local_values(self, predicted):
        return self.predicted if predicted else self.target

    def halo(self, local, before, after, wrap=False):
        if not wrap:
            return local, 0, 0
        return torch.cat([local[local.shape[0] - before :], local]), before, 0

    def global_sum(self, value):
        return value.clone()

    def global_max(self, value):
        return value

    def global_topk(self, scores, k, exclude=None):
        idx = torch.arange(self.num_points)
        if exclude is not None and exclude.numel():
            keep = ~torch.isin(idx, exclude)
            scores, idx = scores[keep], idx[keep]
        return selection.topk_canonical(scores, idx, k)[1]

    def random_picks(self, count, exclude, step):
        return selection.random_picks(
            self.num_points, count, exclude, selection.step_generator(self.seed, step)
        )

    def weighted_picks(self, weights, count, exclude, step, salt):
        keys = selection.weighted_keys(
            weights, selection.index_uniforms(self.seed, step, salt, self.arange())
        )
        return self.global_topk(keys, count, exclude)


# ---------------------------------------------------------------- primitives


def test_index_uniforms_depend_only_on_the_index_and_look_uniform():
    idx = torch.arange(20_000)
    u = selection.index_uniforms(7, 3, 1, idx)
    assert torch.equal(u[5000:6000], selection.index_uniforms(7, 3, 1, idx[5000:6000]))
    assert not torch.equal(u, selection.index_uniforms(7, 4, 1, idx))
    assert not torch.equal(u, selection.index_uniforms(7, 3, 2, idx))
    assert 0 < float(u.min()) and float(u.max()) < 1
    counts = torch.histc(u, bins=10, min=0, max=1)
    assert (counts - 2000).abs().max() < 200  # ~4.7 sigma of a binomial(20000, 0.1)


def test_weighted_keys_draw_without_replacement_in_proportion():
    """Top-2 keys over 3 items with weights 1, 2, 3 against the exact sequential probabilities."""
    weights = torch.tensor([1.0, 2.0, 3.0])
    trials = 30_000
    u = selection.index_uniforms(1, 0, 0, torch.arange(3 * trials)).reshape(trials, 3)
    keys = selection.weighted_keys(weights.repeat(trials), u.reshape(-1)).reshape(trials, 3)
    first, second = keys.topk(2, dim=1).indices.unbind(1)
    total = 6.0
    for a in range(3):
        assert float((first == a).double().mean()) == pytest.approx(float(weights[a]) / total, abs=0.012)
        for b in range(3):
            if a != b:
                p = weights[a] / total * weights[b] / (total - weights[a])
                got = ((first == a) & (second == b)).double().mean()
                assert float(got) == pytest.approx(float(p), abs=0.012)
    keys = selection.weighted_keys(torch.tensor([0.0, 1.0, 1e-310]), torch.tensor([0.5, 0.5, 0.5]))
    assert keys[0] == torch.finfo(torch.float64).min < keys[1]  # zero weight: last, yet finite
    assert torch.isfinite(keys).all()


def test_weighted_loss_scale_matches_the_weighted_mean():
    prediction, target = torch.rand(6, 3), torch.rand(6, 3)
    w = torch.tensor([0.2, 1.0, 2.0, 0.5, 1.5, 3.0])
    loss = selection.ddp_scaled_loss(prediction, target, 6, 1, w)
    assert float(loss) == pytest.approx(float((w * (prediction - target).pow(2).mean(1)).mean()), rel=1e-6)


# ---------------------------------------------------------------- int


def test_int_takes_the_top_residuals_and_freezes_them_between_refreshes():
    ctx = HandContext((10, 10), total_steps=100)
    ctx.residual = torch.arange(100.0).flip(0)  # coordinate 0 is the worst
    common = SamplerConfig(name="int", ratio=0.2, ratio_schedule="step", interval="incremental")
    sampler = ErrorTopK(None, common)
    assert sampler.select(ctx, 0).indices.tolist() == list(range(20))
    ctx.residual = torch.arange(100.0)  # now the last coordinates are the worst
    assert sampler.select(ctx, 1).indices.tolist() == list(range(80, 100))
    frozen = sampler.select(ctx, 30)  # incremental: interval 10 from step 25 on; 30 refreshes
    assert frozen.indices.numel() == int(0.2 * 100 + 3 * 8)  # step schedule: stage 3 → r = 0.44
    ctx.residual = torch.arange(100.0).flip(0)
    assert sampler.select(ctx, 31) is frozen  # not a refresh step: same indices, same size


# ---------------------------------------------------------------- egra


def test_canny_finds_a_vertical_step_once_and_ignores_weak_noise():
    grey = torch.zeros(12, 12)
    grey[:, 6:] = 100.0  # a strong vertical edge between columns 5 and 6
    grey[2, 2] = 3.0  # a faint blip below the low threshold
    edges = canny(grey, 30, 40, hysteresis_px=4)
    # L1 Sobel magnitude 400 at columns 5 and 6; NMS keeps the first of the equal pair (m > left, m >= right)
    assert edges[:, 5].all() and not edges[:, 6].any()
    assert int(edges.sum()) == 12


def test_canny_hysteresis_follows_weak_edges_only_as_far_as_allowed():
    grey = torch.zeros(30, 12)
    grey[:4, 6:] = 20.0  # strong vertical edge on the top rows (L1 magnitude 80 > 40) ...
    grey[4:, 6:] = 9.0  # ... continued by a weak one (magnitude 36, between 30 and 40)
    e0, e8, e40 = (canny(grey, 30, 40, px) for px in (0, 8, 40))
    assert not e0[5:].any()  # without hysteresis the weak part is dropped
    # the weak chain starts at row 5 (8-connected to the strong corner at (4, 6)); 8 steps reach row 12
    assert int(e8.sum() - e0.sum()) == 8 and e8[5:13, 5].all() and not e8[13:].any()
    assert int(e40.sum() - e0.sum()) == 25 and e40[5:, 5].all()  # the whole weak chain


def test_egra_band_shifts_every_edge_pixel_6_to_9_positions_and_wraps():
    ctx = HandContext((4, 10), seed=3)
    edges = torch.zeros(40, dtype=torch.bool)
    edges[[2, 35]] = True
    band = shifted_band(ctx, edges, step=5)
    u = selection.index_uniforms(3, 5, 0xE6A1, torch.tensor([2, 35]))
    expected = sorted(int(i + 6 + math.floor(4 * float(v))) % 40 for i, v in zip([2, 35], u, strict=True))
    assert band.nonzero().squeeze(1).tolist() == expected  # 35 + 6..9 wraps to 1..4
    assert not band[[2, 35]].any()


def test_egra_weights_prefer_the_band_by_the_ports_ratio():
    cfg = SamplerConfig(name="egra").egra
    edge = cfg.edge_prob + (1 - cfg.edge_prob) * cfg.base_prob
    assert edge / ((1 - cfg.edge_prob) * cfg.base_prob) == pytest.approx(1.39, abs=0.01)


def test_grey_levels_use_opencvs_weights():
    rgb = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])
    assert grey_8bit(rgb).tolist() == [[76.0, 150.0, 29.0]]  # round(255 * 0.299 / 0.587 / 0.114)


# ---------------------------------------------------------------- expansive


def test_otsu_splits_two_clusters_between_them():
    hist = torch.zeros(256)
    hist[[40, 41, 42]] = 100
    hist[[200, 201]] = 50
    assert 42 <= otsu_threshold(hist) < 200


def test_dilate_2x2_spreads_down_and_right():
    edges = torch.zeros(4, 4, dtype=torch.bool)
    edges[1, 1] = True
    got = dilate_2x2(edges).nonzero().tolist()
    assert got == [[1, 1], [1, 2], [2, 1], [2, 2]]


def test_expansive_keeps_all_anchors_and_fills_the_rest_uniformly():
    sampler = build_sampler(SamplerConfig(name="expansive", ratio=0.2))
    ctx = HandContext((10, 10))
    sampler.anchors = torch.tensor([3, 50, 77])  # as if the prior had found these
    sel = sampler.select(ctx, 4)
    assert sel.indices.numel() == 20 and sel.shares == {"anchor": 3, "random": 17}
    assert {3, 50, 77} <= set(sel.indices.tolist()) and len(set(sel.indices.tolist())) == 20
    assert sampler.select(ctx, 5).indices.tolist() != sel.indices.tolist()  # fresh random part


# ---------------------------------------------------------------- evos


def test_evos_fitness_schedule_and_elite_size():
    assert fitness_interval(1, 5000, 100, 50) == 99 and fitness_interval(5000, 5000, 100, 50) == 50
    steps = [t for t in range(1, 5001) if is_fitness_step(t, 5000, 100, 50)]
    assert steps[:2] == [1, 100] and 65 <= len(steps) <= 75  # about T·ln2/50
    assert num_elite(0.2, 0.1, 1000) == 100


def test_evos_crossover_on_a_hand_made_image():
    """A 6×6 grey image; e and q are arranged so that the elite is known by hand."""
    ctx = HandContext((6, 6), total_steps=10)
    target = torch.zeros(6, 6, 3)
    predicted = target.clone()
    predicted[0, 0] = 0.5  # big error at pixel 0 → big e there, big Laplacian error around it
    predicted[5, 5] = 0.1  # small error at pixel 35
    ctx.target, ctx.predicted = target.reshape(-1, 3), predicted.reshape(-1, 3)
    cfg = EvosConfig(mutation=0.5, interval_start=3, interval_end=3)
    sampler = Evos(cfg, SamplerConfig(name="evos", ratio=0.5))
    sel = sampler.select(ctx, 0)  # t = 1: a fitness step trains on everything
    assert sel.indices.tolist() == list(range(36)) and sel.shares == {"fitness": 36}
    n = num_elite(0.5, 0.25, 36)
    assert sampler.elite.numel() == n == 9
    e = 4 * (predicted - target).pow(2).mean(-1).reshape(-1)
    lap = laplacian(
        255 * 0.2989 * predicted[..., 0] + 255 * 0.587 * predicted[..., 1] + 255 * 0.114 * predicted[..., 2]
    )
    q = 1e-5 * lap.reshape(-1).double() ** 2
    top_e = set(torch.topk(e, 2).indices.tolist())  # only 0 and 35 have any error
    assert top_e <= set(sampler.elite.tolist())
    assert {1, 6} <= set(sampler.elite.tolist())  # the Laplacian neighbours of pixel 0
    assert int((q > 0).sum()) == 6  # corners 0 and 35 and their 2 + 2 neighbours inside the image
    later = sampler.select(ctx, 1)  # t = 2: 2 % 3 != 1 → elite + mutation
    assert later.shares == {"elite": int(0.25 * 36), "mutation": int(0.25 * 36)}
    elite_part = set(sampler.elite[sampler.elite.numel() - 9 :].tolist())
    assert elite_part <= set(later.indices.tolist())
    assert sampler.select(ctx, 2).shares == {"elite": 9, "mutation": 9}  # t = 3
    assert sampler.select(ctx, 3).shares == {"fitness": 36}  # t = 4: 4 % 3 == 1


# ---------------------------------------------------------------- soft


def test_soft_weights_follow_the_clamped_inverse_error():
    e = torch.tensor([0.5, 0.1, 0.01, 1e-6], dtype=torch.float64)
    w = soft_weights(e, 0.6)
    raw = e.clamp_min(2**-10).reciprocal().pow(0.6)
    assert w[0] == pytest.approx(max(0.2, float(raw[0])))
    assert float(w.max()) == pytest.approx(float(raw.mean() + raw.std()))
    assert torch.equal(soft_weights(e, 0.0), torch.ones(4, dtype=torch.float64))


def test_soft_flat_index_is_row_times_width_on_non_square_images():
    positions = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5]], dtype=torch.float64)
    assert positions_to_flat(positions, (3, 7)).tolist() == [6, 14, 1 * 7 + 3]


# ---------------------------------------------------------------- stratified


def test_stratified_draws_one_index_in_each_stratum():
    ctx = HandContext((10, 13), seed=7)  # N = 130
    for ratio, bounds in ((0.1, [10 * j for j in range(14)]), (12 / 130, [130 * j // 12 for j in range(13)])):
        sampler = build_sampler(SamplerConfig(name="stratified", ratio=ratio))
        k = len(bounds) - 1
        for step in range(3):
            got = sampler.select(ctx, step).indices.tolist()
            assert len(got) == k and sampler.select(ctx, step).shares == {"strata": k}
            assert all(bounds[j] <= got[j] < bounds[j + 1] for j in range(k)), (ratio, step, got)
    # stratum j's pick sits at ⌊u_j · size⌋ for u_j the (seed, step, j) hash: 13 strata of 10
    u = selection.index_uniforms(7, 4, SALT_STRATUM, torch.arange(13))
    got = build_sampler(SamplerConfig(name="stratified", ratio=0.1)).select(ctx, 4).indices
    assert got.tolist() == [10 * j + math.floor(10 * float(u[j])) for j in range(13)]


def test_stratified_covers_every_index_over_steps_and_jitter_0_is_a_fixed_grid():
    ctx = HandContext((4, 5), seed=1)  # N = 20, 2 strata of 10
    sampler = build_sampler(SamplerConfig(name="stratified", ratio=0.1))
    seen = torch.cat([sampler.select(ctx, step).indices for step in range(200)])
    assert torch.bincount(seen, minlength=20).min() > 0  # every index of each stratum is drawn
    grid = build_sampler(SamplerConfig(name="stratified", ratio=0.2, stratified=StratifiedConfig(jitter=0.0)))
    assert grid.select(ctx, 0).indices.tolist() == grid.select(ctx, 9).indices.tolist() == [2, 7, 12, 17]


# ---------------------------------------------------------------- exactness across workers

BASELINES = {
    "int": dict(ratio_schedule="step", interval="dense2"),
    "egra": dict(egra=EgraConfig(hysteresis_px=6)),
    "soft": dict(soft=SoftConfig(warmup=2)),
    "evos": dict(evos=EvosConfig(interval_start=3, interval_end=2)),
    "expansive": dict(expansive=ExpansiveConfig(hysteresis_px=6, anchor=0.9)),
    "nint-paper": dict(),  # not baselines, but checked the same way: the whole shard ranked
    "nint": dict(),  # NTK and residuals ranked over a pool, split between the shards
    "error-map": dict(error_map=ErrorMapConfig(tile_side=3, uniform_share=0.3, weighting="importance")),
    "stratified": dict(),  # a hash per stratum: no communication at all
}
STEPS = 5


def _context(signal: Path, rank: int, world: int) -> ShardContext:
    array, spec = open_signal(signal)
    shard = load_shard(array, spec, world, rank, torch.device("cpu"), torch.float64)
    torch.manual_seed(1)
    model = build_model(2, 3, ModelConfig(layers=3, width=16)).double()
    return ShardContext(model, shard, Comm(rank, world), pass_size=37, seed=11, total_steps=20)


def _selections(ctx: ShardContext) -> dict:
    out = {}
    for name, extra in BASELINES.items():
        sampler = build_sampler(SamplerConfig(name=name, ratio=0.2, **extra))
        picks = []
        for step in range(STEPS):
            sel = sampler.select(ctx, step)
            picks.append((sel.indices.clone(), None if sel.weights is None else sel.weights.clone()))
            if getattr(sampler, "observes", False):  # as the worker does: each part's residuals, gathered
                k, world = sel.indices.numel(), ctx.comm.world_size
                bounds = [selection.balanced_bounds(k, world, r) for r in range(world)]
                lo, hi = bounds[ctx.comm.rank]
                part = sel.indices[lo:hi]
                errors = selection.index_uniforms(3, step, 1, part).double() * (1 + part % 7)
                sampler.observe(ctx, sel.indices, gather_parts(ctx.comm, errors, bounds))
        out[name] = picks
    rows = ctx.local_values(predicted=False).reshape(-1, 20, 3)
    block, top, bottom = ctx.halo(rows, 9, 9)
    out["halo"] = (block, top, bottom)
    out["stats"] = ctx.sample_stats(torch.tensor([0, 3, 3, 199, 250, 479]))
    return out


def _worker(rank, world, port, signal, folder):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.save(_selections(_context(signal, rank, world)), Path(folder) / f"rank{rank}.pt")
    leave_spawned_rank()


@pytest.fixture(scope="module")
def single(tiny_signal_module):
    return _selections(_context(tiny_signal_module, 0, 1))


def test_every_baseline_is_registered():
    assert set(BASELINES) <= set(SAMPLERS)


@pytest.mark.parametrize("world", [3])  # 3 workers of 2, 2 and 2 chunk rows: halos cross two shards
def test_baseline_selections_do_not_depend_on_the_worker_count(world, single, tiny_signal_module, tmp_path):
    ctx = mp.get_context("spawn")
    port = free_port()
    procs = [
        ctx.Process(target=_worker, args=(r, world, port, tiny_signal_module, str(tmp_path)))
        for r in range(world)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(world)]
    for name in BASELINES:
        for step in range(STEPS):
            expected_idx, expected_w = single[name][step]
            for got in results:
                idx, w = got[name][step]
                assert torch.equal(idx, expected_idx), f"{name} step {step} with {world} workers"
                if expected_w is not None:
                    assert torch.allclose(w, expected_w, rtol=1e-12), f"{name} weights, step {step}"
    assert all(single[name][0][0].numel() for name in BASELINES)
    whole = single["halo"][0]
    for rank, got in enumerate(results):  # each worker's rows plus 9 rows each side, cut from the image
        block, top, bottom = got["halo"]
        lo = _context_rows(tiny_signal_module, rank, world)[0] - top
        assert torch.equal(block, whole[lo : lo + block.shape[0]])
        assert torch.allclose(got["stats"], single["stats"], rtol=1e-12, atol=1e-15)


def _context_rows(signal, rank, world):
    from nint_dist.signal import shard_rows

    return shard_rows(open_signal(signal)[1], world, rank)


# ---------------------------------------------------------------- weighted loss through Ray Train


def _fit_soft(signal: Path, run_dir: Path, workers: int) -> torch.Tensor:
    backend = "ray" if workers > 1 else "local"
    argv = [f"train.workers={workers}"]
    argv += [
        "sampler.name=soft",
        "sampler.soft.warmup=2",
        "train.dtype=float64",
        "train.steps=4",
        "model.width=16",
    ]
    argv += [
        "model.layers=3",
        "sampler.pass_size=50",
        "log.every=4",
        "log.progress=false",
        "log.tensorboard=false",
    ]
    assert launch_fit(signal, run_dir, *argv, f"run.backend={backend}") == 0
    final = json.loads((run_dir / "final.json").read_text())
    return torch.tensor([final["mse"], final["loss"]], dtype=torch.float64)


def test_soft_minings_weighted_loss_trains_alike_on_two_ray_workers(
    ray_session, tiny_signal_module, tmp_path
):
    """Per-sample weights travel with each worker's part of the selection: after 4 weighted
    steps (ρ > 0 from step 1) the fit's MSE over the image and its last weighted training loss
    match the one-process fit to float64 precision."""
    one = _fit_soft(tiny_signal_module, tmp_path / "one", 1)
    two = _fit_soft(tiny_signal_module, tmp_path / "two", 2)
    assert ((two - one).norm() / one.norm()).item() < 1e-9
