"""The CUDA-graph fast step on a CPU: when it applies, and that its plumbing (static inputs,
gradients kept in place, fallback to the eager pass for other sizes) computes what the eager
step computes. The graph itself needs a GPU; here a stand-in replays the pass eagerly into
the captured output and gradient tensors, as a graph's replay writes them."""

import pytest
import torch

from nint_dist.config import load_config
from nint_dist.faststep import MAX_SIZES, GraphCache, GraphedScoringContext, GraphedTraining, graphs_wanted
from nint_dist.samplers import Sampler, Selection
from nint_dist.steptimer import PhaseTimer
from nint_dist.training import Loop

FIT = [
    "model.layers=3",
    "model.width=16",
    "train.lr=1e-3",
    "train.dtype=float64",
    "log.tensorboard=false",
    "run.backend=local",
]


def replaying_eagerly(params: list[torch.Tensor]):
    """A stand-in for ``faststep.Captured``: the first call is the capture; a replay runs the
    pass again and copies its results into the captured output and gradient tensors, and, like
    a graph's replay, leaves what the parameters' ``.grad`` point to as it was."""

    class EagerReplay:
        def __init__(self, compute, index, reset):
            self.compute, self.reset, self.index = compute, reset, index.clone()
            reset()
            self.output = compute(self.index)
            self.grads = [p.grad for p in params]

        def replay(self, index):
            attached = [p.grad for p in params]  # a replay leaves the .grad attributes alone
            self.index.copy_(index)
            self.reset()
            fresh = self.compute(self.index)
            tuples = isinstance(fresh, tuple)
            for captured, new in zip(self.output, fresh, strict=True) if tuples else [(self.output, fresh)]:
                if captured is not None:
                    captured.copy_(new)
            for p, grad, before in zip(params, self.grads, attached, strict=True):
                if grad is not None:
                    grad.copy_(p.grad)
                p.grad = before
            return self.output

    return EagerReplay


def test_graphs_only_where_they_are_exact():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert graphs_wanted(True, cuda, 1, False, "constant")
    assert not graphs_wanted(False, cuda, 1, False, "constant")
    assert not graphs_wanted(True, cpu, 1, False, "constant")
    assert not graphs_wanted(True, cuda, 2, False, "constant")
    assert not graphs_wanted(True, cuda, 1, True, "constant")
    assert not graphs_wanted(True, cuda, 1, False, "linear")
    assert not graphs_wanted(True, cuda, 1, False, "constant", autocast=True)


def trainer(signal, run_dir, *extra) -> Loop:
    run_dir.mkdir()
    cfg = load_config(None, [f"data.path={signal}", f"run.dir={run_dir}", *FIT, *extra])
    return Loop.in_process(cfg, "cpu")


def replay_eagerly(loop: Loop) -> None:
    """The loop's training pass through ``GraphedTraining`` with ``replaying_eagerly`` captures,
    handing on residuals where the loop wants them (as ``Loop`` wires it on a GPU)."""
    params = list(loop.model.parameters())
    loop.graphed = GraphedTraining(
        lambda part: loop.local_pass(part, residuals=loop.residuals_wanted),
        params,
        loop.update.optimizer,
        loop.clock.timer,
        capture=replaying_eagerly(params),
    )


def steps_side_by_side(eager: Loop, graphed: Loop, steps: int) -> set[int]:
    """``steps`` steps of each: the same selections and losses. Returns the selection sizes."""
    sizes = set()
    for _ in range(steps):
        sel_e, loss_e = eager.step()
        sel_g, loss_g = graphed.step()
        assert torch.equal(sel_e.indices, sel_g.indices)
        assert torch.allclose(loss_e, loss_g, rtol=1e-12, atol=0)
        sizes.add(sel_g.indices.numel())
    return sizes


def assert_same_parameters(eager: Loop, graphed: Loop) -> None:
    for a, b in zip(eager.model.parameters(), graphed.model.parameters(), strict=True):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)


class Cycling(Sampler):
    """Uniform picks whose count cycles through three sizes: the first two are captured, the
    third runs eagerly between replays."""

    def select(self, ctx, step):
        count = (96, 80, 60)[step % 3]
        return Selection.from_parts(random=ctx.random_picks(count, ctx.arange()[:0], step))


def test_graphed_training_steps_match_eager_ones(tiny_signal, tmp_path):
    settings = ["sampler.name=uniform", "train.steps=12"]
    eager = trainer(tiny_signal, tmp_path / "eager", *settings)
    graphed = trainer(tiny_signal, tmp_path / "graphed", *settings)
    sections = eager.sampler.cfg, eager.sampler.common
    eager.sampler, graphed.sampler = Cycling(*sections), Cycling(*sections)
    replay_eagerly(graphed)
    sizes = steps_side_by_side(eager, graphed, 12)
    assert len(graphed.graphed.cache.captured) == MAX_SIZES < len(sizes)
    assert_same_parameters(eager, graphed)


def test_graphed_training_hands_the_error_map_its_residuals(tiny_signal, tmp_path):
    """error-map draws from the residuals of the passes before: graphed, the pass computes
    them too, so the selections and parameters stay the eager run's."""
    settings = ["sampler.name=error-map", "sampler.ratio=0.3", "train.steps=8"]
    eager = trainer(tiny_signal, tmp_path / "eager", *settings)
    graphed = trainer(tiny_signal, tmp_path / "graphed", *settings)
    replay_eagerly(graphed)
    steps_side_by_side(eager, graphed, 8)
    assert len(graphed.graphed.cache.captured) == 1  # the pass was replayed, not run eagerly
    assert torch.allclose(eager.sampler.sums, graphed.sampler.sums, rtol=1e-12, atol=0)
    assert_same_parameters(eager, graphed)


def test_graphed_training_weighs_the_losses_with_the_eager_runs_emphasis(tiny_signal, tmp_path):
    """The emphasis reads its scale inside the captured pass: updated in place after every
    step, the replays weigh the losses as the eager passes do."""
    settings = ["sampler.name=uniform", "sampler.emphasis.power=1", "train.steps=6"]
    eager = trainer(tiny_signal, tmp_path / "eager", *settings)
    graphed = trainer(tiny_signal, tmp_path / "graphed", *settings)
    replay_eagerly(graphed)
    steps_side_by_side(eager, graphed, 6)
    assert len(graphed.graphed.cache.captured) == 1
    assert graphed.update.emphasis.scale > 0
    assert torch.allclose(eager.update.emphasis.scale, graphed.update.emphasis.scale, rtol=1e-12, atol=0)
    assert_same_parameters(eager, graphed)


def test_graphed_pool_scoring_matches_the_eager_pass(tiny_signal, tmp_path):
    t = trainer(tiny_signal, tmp_path / "run", "sampler.name=uniform")
    ctx = GraphedScoringContext(t.model, t.shard, t.comm, 64, 0, 10, t.clock.timer)
    ctx.capture = replaying_eagerly([])
    generator = torch.Generator().manual_seed(0)
    for size in (50, 50, 70, 50, 90):  # 90: a third size, scored eagerly
        rows = torch.randperm(t.shard.size, generator=generator)[:size]
        assert torch.equal(ctx.residual_l1_at(rows), t.ctx.residual_l1_at(rows))
    assert sorted(ctx.pool_graphs["full"].captured) == [50, 70]


def test_a_pass_that_cannot_be_captured_runs_eagerly():
    def refuse(compute, index, reset):
        raise RuntimeError("operation not permitted when stream is capturing")

    cache = GraphCache(lambda index: index * 2, PhaseTimer(torch.device("cpu")), "score", capture=refuse)
    with pytest.warns(UserWarning, match="runs eagerly"):
        assert cache.run(torch.arange(5)) is None
    assert cache.run(torch.arange(5)) is None and cache.refused == {5}  # not tried again
