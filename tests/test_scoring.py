"""Chunked VJP/JVP NTK scores against an explicit Jacobian."""

import pytest
import torch

from nint_dist import scoring
from nint_dist.models.ffn import FourierFeatureMLP
from nint_dist.models.hashgrid import HashGrid
from nint_dist.models.siren import Siren


def explicit_scores(model, coords, targets):
    """‖(J Jᵀ r)_i‖² with J formed explicitly: [N·C, P]."""
    params = dict(model.named_parameters())
    names = list(params)

    def flat_out(*values):
        return torch.func.functional_call(model, dict(zip(names, values, strict=True)), (coords,)).reshape(-1)

    jac = torch.autograd.functional.jacobian(flat_out, tuple(p.detach() for p in params.values()))
    J = torch.cat([j.reshape(j.shape[0], -1) for j in jac], dim=1)
    with torch.no_grad():
        r = (model(coords) - targets).reshape(-1)
    w = (J @ (J.T @ r)).reshape(coords.shape[0], -1)
    return w.pow(2).sum(-1)


MODELS = {
    "siren": lambda: Siren(2, 3, layers=3, width=12),
    "ffn": lambda: FourierFeatureMLP(2, 3, layers=3, width=12, features=8, scale=3.0),
    "hashgrid": lambda: HashGrid(
        2, 3, layers=2, width=8, levels=3, log2_size=6, features=2, base_resolution=4, max_resolution=16
    ),  # fmt: skip
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_chunked_scores_equal_explicit_jacobian(name):
    torch.manual_seed(0)
    model = MODELS[name]().double()
    if name == "hashgrid":  # tables start near zero; give every entry a gradient that matters
        torch.nn.init.uniform_(model.tables, -1, 1)
    coords = torch.rand(37, 2, dtype=torch.float64) * 2 - 1
    targets = torch.rand(37, 3, dtype=torch.float64)
    expected = explicit_scores(model, coords, targets)

    def coords_of(lo, hi):
        return coords[lo:hi]

    def targets_of(lo, hi):
        return targets[lo:hi]

    for chunk in (5, 16, 37, 100):
        v = scoring.residual_vjp(model, coords_of, targets_of, 37, chunk)
        got = scoring.ntk_scores(model, v, coords_of, 37, chunk)
        rel = ((got - expected).abs().max() / expected.abs().max()).item()
        assert rel < 1e-9, (chunk, rel)


def test_vjp_over_blocks_sums_to_global_v():
    """Splitting the coordinates into shards and summing their Jᵀr gives the global v."""
    torch.manual_seed(1)
    model = Siren(2, 1, layers=3, width=8).double()
    coords = torch.rand(30, 2, dtype=torch.float64)
    targets = torch.rand(30, 1, dtype=torch.float64)
    whole = scoring.residual_vjp(model, lambda a, b: coords[a:b], lambda a, b: targets[a:b], 30, 7)
    parts = [
        scoring.residual_vjp(
            model, lambda a, b, s=s: coords[s + a : s + b], lambda a, b, s=s: targets[s + a : s + b], 10, 3
        )
        for s in (0, 10, 20)
    ]
    for name, value in whole.items():
        assert torch.allclose(value, sum(p[name] for p in parts), rtol=1e-12, atol=1e-14)


def test_residual_l1_matches_direct():
    torch.manual_seed(2)
    model = Siren(2, 3, layers=2, width=8)
    coords, targets = torch.rand(20, 2), torch.rand(20, 3)
    got = scoring.residual_l1(model, lambda a, b: coords[a:b], lambda a, b: targets[a:b], 20, 6)
    with torch.no_grad():
        expected = (model(coords) - targets).abs().sum(-1)
    assert torch.allclose(got, expected)


def test_siren_is_sine_of_w0_times_each_affine_map_with_a_linear_head():
    torch.manual_seed(3)
    model = Siren(2, 3, layers=4, width=16, w0=25.0, w0_initial=40.0).double()
    coords = torch.rand(50, 2, dtype=torch.float64) * 2 - 1
    (w1, b1), (w2, b2), (w3, b3), (w4, b4) = (
        (p.weight.detach(), p.bias.detach()) for p in model.modules() if isinstance(p, torch.nn.Linear)
    )
    h = torch.sin(40.0 * (coords @ w1.T + b1))
    h = torch.sin(25.0 * (h @ w2.T + b2))
    h = torch.sin(25.0 * (h @ w3.T + b3))
    with torch.no_grad():
        assert torch.allclose(model(coords), h @ w4.T + b4, atol=1e-12)
    assert sorted(model.state_dict()) == [f"net.{i}.{p}" for i in (0, 2, 4, 6) for p in ("bias", "weight")]


def audio_siren_and_signal(n: int = 4000):
    """A SIREN with audio's first-layer frequency, 1-D coordinates and a target beside its output."""
    torch.manual_seed(4)
    model = Siren(1, 1, layers=4, width=64, w0_initial=3000.0)
    coords = torch.linspace(-1, 1, n).unsqueeze(1)
    with torch.no_grad():
        targets = model(coords) + 0.05 * torch.randn(n, 1)
    return model, coords, targets


def fourier_features_and_coords():
    torch.manual_seed(5)
    return FourierFeatureMLP(2, 1, layers=3, width=64, features=64, scale=10.0), torch.rand(2000, 2) * 2 - 1


@pytest.mark.parametrize(
    "build", [lambda: audio_siren_and_signal()[:2], fourier_features_and_coords], ids=["siren", "ffn"]
)
def test_dense_models_under_bf16_autocast_keep_their_phases_exact(build):
    """SIREN's first layer at w0 = 3000 and the Fourier features' projection at scale 10 make
    phases of hundreds to thousands of radians, which bfloat16 gets wrong by radians (the output
    would be another function); kept in float32 the rest of the network's error is small."""
    model, coords = build()
    with torch.no_grad():
        exact = model(coords)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            reduced = model(coords).float()
    assert (reduced - exact).abs().max() < 0.05 * exact.abs().max()


def test_bf16_rankings_keep_the_full_precision_top_sets():
    """Residual and NTK scores under bfloat16 autocast against the same scores in float32: the
    top tenth, what a pool ranking keeps, is nearly the same set."""
    model, coords, targets = audio_siren_and_signal()
    n, top = coords.shape[0], coords.shape[0] // 10

    def coords_of(lo, hi):
        return coords[lo:hi]

    def targets_of(lo, hi):
        return targets[lo:hi]

    def top_set(scores):
        return set(torch.topk(scores.float(), top).indices.tolist())

    for name, rank in {
        "residual": lambda p: scoring.residual_l1(model, coords_of, targets_of, n, 1000, p),
        "ntk": lambda p: scoring.ntk_scores(
            model, scoring.residual_vjp(model, coords_of, targets_of, n, 1000, p), coords_of, n, 1000, p
        ),
        "output": lambda p: scoring.output_sq_norm(model, coords_of, n, 1000, p),
    }.items():
        full, reduced = rank("full"), rank("bf16")
        assert full.dtype == reduced.dtype == torch.float32, name
        assert not torch.equal(full, reduced), name  # the scores did come from bfloat16 passes
        overlap = len(top_set(full) & top_set(reduced)) / top
        assert overlap > 0.9, (name, overlap)


def test_auto_precision_is_bf16_only_for_dense_models_on_a_cpu_that_multiplies_it_in_hardware():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    siren, ffn = Siren(2, 1, layers=2, width=8), FourierFeatureMLP(2, 1, layers=2, width=8, features=4)
    grid = HashGrid(2, 1, layers=2, width=4, levels=2, log2_size=6)
    for dense in (siren, ffn):
        assert scoring.ranking_precision("auto", cpu, dense, bf16_in_hardware=True) == "bf16"
        assert scoring.ranking_precision("auto", cpu, dense, bf16_in_hardware=False) == "full"
        assert scoring.ranking_precision("auto", cuda, dense, bf16_in_hardware=True) == "full"
    assert scoring.ranking_precision("auto", cpu, grid, bf16_in_hardware=True) == "full"
    for setting in scoring.PRECISIONS:
        assert scoring.ranking_precision(setting, cpu, grid, bf16_in_hardware=False) == setting


def test_hash_grid_reads_its_dense_level_at_grid_points_and_interpolates_between():
    grid = HashGrid(2, 1, layers=2, width=4, levels=1, log2_size=10, features=1, base_resolution=4,
                    max_resolution=4).double()  # fmt: skip
    with torch.no_grad():
        grid.tables.copy_(torch.arange(25, dtype=torch.float64).view(25, 1))  # its 5² grid points
    side = 5  # resolution 4: corners 0..4 along each axis, entry = x + side · y
    at = lambda x, y: torch.tensor([[x / 4 * 2 - 1, y / 4 * 2 - 1]], dtype=torch.float64)  # noqa: E731
    assert grid.encode(at(1, 3)).item() == 1 + side * 3
    assert grid.encode(at(4, 4)).item() == 4 + side * 4  # the far corner
    assert grid.encode(at(1.5, 2)).item() == pytest.approx(0.5 * (1 + 2) + side * 2)
    assert grid.encode(at(2, 2.25)).item() == pytest.approx(2 + side * 2.25)
