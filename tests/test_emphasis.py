"""Residual emphasis (``sampler.emphasis``): the weights on a hand case, the gradient of a step
trained in several passes against one computed sample by sample, the scale the step leaves
for the next, and a resumed run that continues exactly."""

import pytest
import torch

from nint_dist.config import ConfigError, load_config
from nint_dist.emphasis import EmphasisConfig, emphasis_weights
from nint_dist.signal import flat_to_coords, to_unit
from nint_dist.training import Loop
from tests.helpers import make_tiny_signal


def test_weights_on_a_hand_case():
    errors = torch.tensor([0.0, 0.1, 0.2, 0.4, 1.0], dtype=torch.float64)
    none_yet = emphasis_weights(errors, 1.0, 1.0, 4.0, torch.tensor(0.0, dtype=torch.float64))
    assert torch.equal(none_yet, torch.ones(5, dtype=torch.float64))
    scale = torch.tensor(0.2, dtype=torch.float64)
    expected = torch.tensor([0.0, 0.5, 1.0, 2.0, 4.0], dtype=torch.float64)  # min(e / s, 4)
    assert torch.allclose(emphasis_weights(errors, 1.0, 1.0, 4.0, scale), expected)
    expected = torch.tensor([0.5, 0.525, 0.6, 0.9, 2.5], dtype=torch.float64)  # 0.5 + 0.5 · min(e² / s, 4)
    assert torch.allclose(emphasis_weights(errors, 2.0, 0.5, 4.0, scale), expected)


def test_config_is_checked():
    assert not EmphasisConfig().active
    with pytest.raises(ConfigError, match="sampler.emphasis"):
        load_config(None, ["sampler.emphasis.share=1.5"])


def _loop(tmp_path, *extra: str) -> Loop:
    tmp_path.mkdir(exist_ok=True)
    signal = make_tiny_signal(tmp_path)
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    cfg = load_config(
        None,
        [
            f"data.path={signal}",
            f"run.dir={run}",
            "sampler.name=uniform",
            "sampler.ratio=0.3",
            "sampler.emphasis.power=1",
            "model.layers=3",
            "model.width=16",
            "train.dtype=float64",
            "train.lr=1e-3",
            "log.tensorboard=false",
            *extra,
        ],
    )
    return Loop.in_process(cfg, "cpu")


def _residuals(loop: Loop, indices: torch.Tensor, with_grad: bool = False):
    coords = flat_to_coords(indices, loop.spec, loop.shard.dtype)
    target = to_unit(loop.shard.values[indices], loop.spec, loop.shard.dtype)
    with torch.set_grad_enabled(with_grad):
        return loop.model(coords) - target


def test_a_step_in_passes_has_the_gradient_of_the_weighted_loss_and_sets_the_next_scale(tmp_path):
    loop = _loop(
        tmp_path,
        "sampler.emphasis.power=2",
        "sampler.emphasis.share=0.75",
        "sampler.emphasis.max_ratio=1.5",
        "train.micro_batch=50",
    )
    emphasis = loop.update.emphasis
    first = loop.sampler.select(loop.ctx, 0).indices  # 144 samples: three passes of at most 50
    errors = _residuals(loop, first).abs().mean(dim=-1)
    sel, _ = loop.step()
    assert torch.equal(sel.indices, first)
    assert torch.allclose(emphasis.scale, errors.pow(2).mean(), rtol=1e-12)  # over the whole selection

    # The next step's gradient, from three passes, against one computed sample by sample.
    indices = loop.sampler.select(loop.ctx, 1).indices
    residual = _residuals(loop, indices, with_grad=True)
    e = residual.detach().abs().mean(dim=-1)
    ratio = e.pow(2) / emphasis.scale
    assert (ratio > 1.5).any() and (ratio < 1.5).any()  # the cap binds on some samples
    weights = 0.25 + 0.75 * ratio.clamp(max=1.5)
    expected_loss = (weights * residual.pow(2).mean(dim=-1)).sum() / indices.numel()
    params = list(loop.model.parameters())
    expected = torch.autograd.grad(expected_loss, params, retain_graph=True)
    loop.update.optimizer.zero_grad(set_to_none=True)
    stored = loop.shard.values[indices]
    loss = loop.update.accumulate(indices, stored, None, indices.numel())
    assert torch.allclose(loss, expected_loss.detach(), rtol=1e-12)
    for p, g in zip(params, expected, strict=True):
        assert torch.allclose(p.grad, g, rtol=1e-10, atol=1e-14)
    # and without emphasis the same pass trains on the plain mean: a different gradient
    plain = torch.autograd.grad(residual.pow(2).mean(dim=-1).mean(), params, allow_unused=True)
    assert not torch.allclose(params[0].grad, plain[0], rtol=1e-3)


def test_a_resumed_run_continues_exactly(tmp_path):
    straight = _loop(tmp_path / "a")
    for _ in range(4):
        straight.step()
    first = _loop(tmp_path / "b")
    first.step()
    first.step()
    state = first.state()
    assert state["emphasis_scale"] > 0
    resumed = _loop(tmp_path / "c")
    resumed.restore(state)
    resumed.step()
    resumed.step()
    for a, b in zip(straight.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(straight.update.emphasis.scale, resumed.update.emphasis.scale)
