"""Selection arithmetic against brute force and hand-made cases, and the balanced split's
gradient against the single-process gradient in a real gloo DDP group."""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from nint_dist import selection
from nint_dist.models.siren import Siren
from tests.helpers import free_port, leave_spawned_rank


def brute_topk(scores, indices, k):
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), int(indices[i])))[:k]
    return [int(indices[i]) for i in order]


def test_topk_breaks_ties_by_smaller_index():
    scores = torch.tensor([1.0, 3.0, 3.0, 2.0, 3.0, 0.5])
    indices = torch.tensor([10, 7, 3, 4, 9, 1])
    _, got = selection.topk_canonical(scores, indices, 2)
    assert got.tolist() == [3, 7]
    _, got = selection.topk_canonical(scores, indices, 4)
    assert got.tolist() == [3, 7, 9, 4]


@pytest.mark.parametrize("seed", range(5))
def test_merge_of_partitioned_topk_is_global_topk(seed):
    g = torch.Generator().manual_seed(seed)
    n, k = 500, 60
    scores = torch.randint(0, 40, (n,), generator=g).double()  # many ties on purpose
    indices = torch.randperm(n, generator=g) + 1000
    expected = brute_topk(scores, indices, k)
    for parts in (1, 2, 3, 7):
        chunks = zip(scores.chunk(parts), indices.chunk(parts), strict=True)
        local = [selection.topk_canonical(s, i, k) for s, i in chunks]
        merged = selection.topk_canonical(
            torch.cat([s for s, _ in local]), torch.cat([i for _, i in local]), k
        )[1]
        assert merged.tolist() == expected


def test_topk_set_of_ascending_indices_takes_the_smaller_indices_among_ties():
    scores = torch.tensor([2.0, 5.0, 2.0, 2.0, 7.0, 2.0, float("-inf")])
    indices = torch.tensor([1, 4, 6, 9, 12, 20, 30])
    got_scores, got = selection.topk_set(scores, indices, 4)
    assert got.tolist() == [1, 4, 6, 12] and got_scores.tolist() == [2.0, 5.0, 2.0, 7.0]
    assert selection.canonical_order(got_scores, got)[1].tolist() == [12, 4, 1, 6]
    assert selection.topk_set(scores, indices, 10)[1].tolist() == indices.tolist()
    with_nan = torch.tensor([float("nan"), 1.0, 0.5, float("nan")])
    assert selection.topk_set(with_nan, torch.arange(4), 2)[1].tolist() == [1, 2]  # NaN ranks last


@pytest.mark.parametrize("num_points, count", [(1000, 900), (1000, 130), (100_000, 700), (5, 0)])
def test_distinct_draw_is_distinct_seeded_and_uniform(num_points, count):
    a = selection.distinct_draw(num_points, count, selection.step_generator(1, 2))
    assert torch.equal(a, selection.distinct_draw(num_points, count, selection.step_generator(1, 2)))
    assert a.numel() == count == len(set(a.tolist())) and all(0 <= i < num_points for i in a.tolist())
    if count:  # every index equally likely: positions of 200 draws spread over the range
        hits = torch.zeros(10)
        for step in range(200):
            draw = selection.distinct_draw(num_points, count, selection.step_generator(1, step))
            hits += torch.bincount(draw * 10 // num_points, minlength=10)
        expected = 200 * count / 10
        assert (hits - expected).abs().max() < 0.1 * expected


def test_random_picks_are_distinct_outside_exclusion_and_seeded():
    exclude = torch.tensor([5, 1, 9, 100, 77])
    a = selection.random_picks(200, 60, exclude, selection.step_generator(3, 11))
    b = selection.random_picks(200, 60, exclude, selection.step_generator(3, 11))
    c = selection.random_picks(200, 60, exclude, selection.step_generator(3, 12))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert len(set(a.tolist())) == 60 and not set(a.tolist()) & set(exclude.tolist())
    assert all(0 <= i < 200 for i in a.tolist())
    dense = selection.random_picks(200, 195, exclude, selection.step_generator(0, 0))
    assert sorted(dense.tolist()) == sorted(set(range(200)) - set(exclude.tolist()))
    with pytest.raises(ValueError):
        selection.random_picks(10, 8, torch.tensor([1, 2, 3]), selection.step_generator(0, 0))


def test_random_picks_are_uniform():
    counts = torch.zeros(50)
    for step in range(400):
        counts[selection.random_picks(50, 10, torch.tensor([0]), selection.step_generator(1, step))] += 1
    assert counts[0] == 0
    expected = 400 * 10 / 49
    assert (counts[1:] - expected).abs().max() < 0.35 * expected


def test_balanced_bounds_cover_in_near_equal_parts():
    for k in (0, 1, 7, 30, 31):
        for world in (1, 2, 3, 4):
            bounds = [selection.balanced_bounds(k, world, r) for r in range(world)]
            assert bounds[0][0] == 0 and bounds[-1][1] == k
            assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
            sizes = [hi - lo for lo, hi in bounds]
            assert max(sizes) - min(sizes) <= 1


def _ddp_gradient(rank, world, port, coords, targets, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = Siren(2, 3, layers=3, width=16).double()
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    k = coords.shape[0]
    lo, hi = selection.balanced_bounds(k, world, rank)
    loss = selection.ddp_scaled_loss(ddp(coords[lo:hi]), targets[lo:hi], k, world)
    loss.backward()
    if rank == 0:
        out.put(torch.cat([p.grad.reshape(-1) for p in model.parameters()]).tolist())
    leave_spawned_rank()


@pytest.mark.parametrize("world", [2, 3])
def test_balanced_split_gradient_equals_single_process_gradient(world):
    torch.manual_seed(5)
    coords = torch.rand(23, 2, dtype=torch.float64) * 2 - 1
    targets = torch.rand(23, 3, dtype=torch.float64)
    torch.manual_seed(0)
    model = Siren(2, 3, layers=3, width=16).double()
    torch.nn.functional.mse_loss(model(coords), targets).backward()
    expected = torch.cat([p.grad.reshape(-1) for p in model.parameters()])

    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    port = free_port()
    procs = [
        ctx.Process(target=_ddp_gradient, args=(r, world, port, coords, targets, queue)) for r in range(world)
    ]
    for p in procs:
        p.start()
    got = torch.tensor(queue.get(), dtype=torch.float64)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert torch.allclose(got, expected, rtol=1e-10, atol=1e-13)


def test_phase_timer_splits_a_block_by_label_and_leaves_gaps_out():
    import time

    from nint_dist.steptimer import PhaseTimer

    timer = PhaseTimer(torch.device("cpu"))
    timer.lap("loop")  # opens the block
    time.sleep(0.02)
    timer.lap("select")
    time.sleep(0.04)
    timer.lap("train")
    time.sleep(0.01)
    timer.lap("select")
    spans = timer.close()
    assert set(spans) == {"select", "train"}
    assert spans["select"] >= 0.025 and spans["train"] >= 0.035
    time.sleep(0.05)  # between blocks: not counted
    timer.lap("loop")
    timer.lap("train")
    assert timer.close()["train"] < 0.04 and timer.close() == {}


def test_a_one_worker_selection_reads_nothing_back_from_the_device():
    """On the meta device every value read-back (``.item()``, ``int(t)``, a boolean mask's
    size) raises, so these calls prove that the selection of one worker never makes the host
    wait for a GPU: scoring a pool, excluding picks, the canonical top-k, the first picks outside
    an exclusion."""
    from nint_dist.comm import Comm
    from nint_dist.models.siren import Siren
    from nint_dist.shard import Shard, ShardContext
    from nint_dist.signal import SignalSpec

    meta = torch.device("meta")
    spec = SignalSpec((64, 64), 3, (0.0, 255.0), ((-1.0, 1.0), (-1.0, 1.0)), chunk_rows=8)
    shard = Shard(spec, 0, torch.empty(64 * 64, 3, dtype=torch.uint8, device=meta), torch.float32)
    ctx = ShardContext(Siren(2, 3, 3, 16).to(meta), shard, Comm(), pass_size=1000, seed=0, total_steps=10)
    pool = torch.empty(2000, dtype=torch.int64, device=meta)
    rows, candidates = ctx.local_part(pool)
    residuals = ctx.residual_l1_at(rows)
    assert residuals.shape == (2000,)
    picked = ctx.global_topk(
        residuals, 300, torch.empty(50, dtype=torch.int64, device=meta), candidates, 2000
    )
    assert picked.shape == (300,) and picked.device == meta
    assert ctx.global_topk(ctx.residual_l1(), 500).shape == (500,)  # the whole shard
    rest = torch.empty(800, dtype=torch.int64, device=meta)
    assert rest[selection.first_rows(~selection.isin_sorted(rest, picked), 400)].shape == (400,)
    with pytest.raises(RuntimeError, match="meta"):
        int(residuals.sum())  # what a read-back would do


@pytest.mark.parametrize("num_points", [1, 2, 3, 7, 64, 1000, 4097, 65_536])
def test_epoch_order_is_a_permutation_computed_per_position(num_points):
    positions = torch.arange(num_points)
    order = selection.epoch_order(7, 3, positions, num_points)
    assert torch.equal(torch.sort(order).values, positions)  # every coordinate exactly once
    half = num_points // 2  # any split of the positions (over workers, over steps) agrees
    parts = [selection.epoch_order(7, 3, p, num_points) for p in (positions[half:], positions[:half])]
    assert torch.equal(torch.cat(parts[::-1]), order)
    if num_points >= 64:
        assert not torch.equal(order, selection.epoch_order(7, 4, positions, num_points))
        assert not torch.equal(order, selection.epoch_order(8, 3, positions, num_points))


def test_epoch_order_puts_each_coordinate_anywhere_with_equal_chance():
    """Over 400 epochs, how often each of 1000 coordinates falls in an epoch's first 100
    positions: binomial(400, 0.1), mean 40, sd 6."""
    n, head = 1000, 100
    hits = torch.zeros(n)
    for epoch in range(400):
        hits[selection.epoch_order(11, epoch, torch.arange(head), n)] += 1
    assert abs(hits.mean().item() - 40) < 1e-9
    assert hits.std().item() < 8 and hits.min().item() > 10 and hits.max().item() < 75


def test_the_ordered_draw_is_distinct_and_uniform():
    """distinct_draw on CUDA: a prefix of the keyed epoch order. Distinct, in range, a function
    of the seed; over 2000 seeds each of 50 coordinates is drawn in 10 of them about equally
    often (binomial(2000, 0.2): mean 400, sd 18)."""
    n, k = 50, 10
    draws = torch.stack([selection.ordered_draw(n, k, seed, "cpu") for seed in range(2000)])
    assert all(row.unique().numel() == k for row in draws) and draws.min() >= 0 and draws.max() < n
    assert torch.equal(draws[7], selection.ordered_draw(n, k, 7, "cpu"))
    hits = torch.bincount(draws.flatten(), minlength=n).double()
    assert hits.mean() == 400 and hits.min() > 330 and hits.max() < 470
    first = torch.bincount(draws[:, 0], minlength=n).double()  # the first pick too: mean 40, sd 6
    assert first.min() > 15 and first.max() < 70
