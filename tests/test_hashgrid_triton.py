"""The Triton hash-grid kernels against the plain PyTorch grid, run by Triton's interpreter on
the CPU: forward, backward into tables and coordinates, forward-mode derivative, and the exact
torch.func paths NINT's scoring takes through them."""

import importlib
import os

import pytest
import torch

from nint_dist import scoring
from nint_dist.config import Config, ModelConfig, TrainConfig
from nint_dist.models import build_model, hashgrid_triton
from nint_dist.models.hashgrid import HashGrid, HashGridConfig, check_options

needs_triton = pytest.mark.skipif(not hashgrid_triton.available(), reason="triton is not installed")


@pytest.fixture(scope="module", autouse=True)
def interpreted_kernels():
    """Triton picks interpreter or compiler when a kernel is defined, i.e. when the module is
    imported: re-import it under TRITON_INTERPRET=1, and again without it afterwards, so that
    nothing of this leaks into other tests."""
    before = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    importlib.reload(hashgrid_triton)
    yield
    if before is None:
        del os.environ["TRITON_INTERPRET"]
    else:
        os.environ["TRITON_INTERPRET"] = before
    importlib.reload(hashgrid_triton)


def pair(dim: int, dtype=torch.float64, seed: int = 0, table_dtype: str = "float32", features: int = 2):
    """A torch-backend grid and a Triton-backend copy of it. Levels 0–1 are dense, the finer ones
    hashed (table of 64 rows); tables spread over [-1, 1] so every entry matters."""
    torch.manual_seed(seed)
    kwargs = dict(layers=2, width=8, levels=4, log2_size=6, features=features, base_resolution=2,
                  max_resolution=21, table_dtype=table_dtype)  # fmt: skip
    reference = HashGrid(dim, 3, **kwargs).to(dtype)
    torch.nn.init.uniform_(reference.tables, -1, 1)
    fused = HashGrid(dim, 3, backend="triton", **kwargs).to(dtype)
    fused.load_state_dict(reference.state_dict())
    dense = reference.level_info[:, 1].tolist()
    assert dense[0] == 1 and (dim == 1 or dense[-1] == 0)  # both ways of indexing are exercised
    return reference, fused


def points(n: int, dim: int, dtype=torch.float64, seed: int = 1) -> torch.Tensor:
    """Random points, some outside [-1, 1] (clamped, zero input gradient), plus the domain's
    corners and a grid point of every level (fraction 0)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(n, dim, generator=generator, dtype=dtype) * 2.2 - 1.1
    x[0], x[1], x[2] = -1.0, 1.0, 0.0
    return x


def close(got: torch.Tensor, expected: torch.Tensor, dtype) -> None:
    tolerance = 1e-12 if dtype == torch.float64 else 1e-6
    scale = expected.abs().max().clamp(min=1e-30)
    assert ((got - expected).abs().max() / scale).item() < tolerance


@needs_triton
@pytest.mark.parametrize(
    ("dim", "dtype", "features"),
    [(1, torch.float64, 2), (2, torch.float64, 2), (3, torch.float64, 2), (1, torch.float32, 2),
     (2, torch.float32, 2), (3, torch.float32, 2), (2, torch.float64, 3), (3, torch.float64, 1)],
)  # fmt: skip
def test_forward_and_backward_equal_the_torch_grid(dim, dtype, features):
    reference, fused = pair(dim, dtype, features=features)
    x = points(61, dim, dtype)
    grad_out = torch.randn(61, 3, dtype=dtype, generator=torch.Generator().manual_seed(2))
    results = []
    for model in (reference, fused):
        model.zero_grad()
        xi = x.clone().requires_grad_(True)
        features = model.encode(xi)
        out = model(xi)
        out.backward(grad_out)
        results.append((features.detach(), out.detach(), model.tables.grad.clone(), xi.grad.clone()))
    for got, expected in zip(results[1], results[0], strict=True):
        assert got.dtype == expected.dtype
        close(got, expected, dtype)
    outside = x.abs() > 1
    assert outside.any() and (results[1][3][outside] == 0).all()  # clamped coordinates: no gradient


@needs_triton
def test_hashed_rows_collide_and_accumulate():
    """A 3-D level of 2^6 rows is hashed and many points share rows: the atomic scatter must
    add all their contributions (the table gradient equals the torch grid's index_put sum)."""
    reference, fused = pair(3)
    x = points(200, 3)
    for model in (reference, fused):
        model.zero_grad()
        model.encode(x).pow(2).sum().backward()
    close(fused.tables.grad, reference.tables.grad, torch.float64)
    hashed = reference.tables.grad[reference.level_table(3)]
    assert (hashed.abs().sum(-1) > 0).sum() > 32  # a hashed level, widely hit


@needs_triton
@pytest.mark.parametrize("dim", [2, 3])
def test_jvp_in_parameters_and_coordinates(dim):
    reference, fused = pair(dim)
    x = points(47, dim)
    generator = torch.Generator().manual_seed(3)
    tangents = {
        n: torch.randn(p.shape, dtype=p.dtype, generator=generator) for n, p in reference.named_parameters()
    }
    dx = torch.randn(x.shape, dtype=x.dtype, generator=generator)
    outputs = []
    for model in (reference, fused):
        params = {n: p.detach() for n, p in model.named_parameters()}
        buffers = dict(model.named_buffers())

        def f(p, xi, model=model, buffers=buffers):
            return torch.func.functional_call(model, {**p, **buffers}, (xi,))

        outputs.append(torch.func.jvp(f, (params, x), (tangents, dx)))
        outputs.append(torch.func.jvp(lambda xi, f=f, params=params: f(params, xi), (x,), (dx,)))
    for got, expected in zip(outputs[2:], outputs[:2], strict=True):
        close(got[0], expected[0], torch.float64)
        close(got[1], expected[1], torch.float64)


@needs_triton
def test_ntk_scores_and_residual_vjp_equal_the_torch_grid():
    """scoring.py's own torch.func.vjp and jvp calls, chunked, through both backends."""
    reference, fused = pair(2)
    x = points(53, 2)
    y = torch.rand(53, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    got = {}
    for name, model in (("torch", reference), ("triton", fused)):
        v = scoring.residual_vjp(model, lambda a, b: x[a:b], lambda a, b: y[a:b], 53, 20)
        got[name] = (v, scoring.ntk_scores(model, v, lambda a, b: x[a:b], 53, 20))
        got[name] += (scoring.point_stats(model, x, y),)  # soft mining's input gradient
    for key in got["torch"][0]:
        close(got["triton"][0][key], got["torch"][0][key], torch.float64)
    close(got["triton"][1], got["torch"][1], torch.float64)
    close(got["triton"][2], got["torch"][2], torch.float64)


@needs_triton
def test_half_precision_reads_round_entries_like_the_torch_grid():
    reference, fused = pair(2, torch.float32, table_dtype="float16")
    full, _ = pair(2, torch.float32)
    x = points(64, 2, torch.float32)
    for model in (reference, fused, full):
        model.zero_grad()
        model.encode(x).pow(2).sum().backward()
    assert fused.tables.dtype == torch.float32  # the parameter (and its Adam state) stays float32
    close(fused.encode(x), reference.encode(x), torch.float32)
    close(fused.tables.grad, reference.tables.grad, torch.float32)
    rounding = (reference.encode(x) - full.encode(x)).abs().max().item()
    assert 0 < rounding < 1e-3  # entries in [-1, 1] rounded to 11 significant bits


@needs_triton
def test_training_steps_and_checkpoints_are_interchangeable():
    """Three Adam steps from the same start end in the same parameters; the state dicts have
    the same keys, so a checkpoint of one backend loads into the other."""
    reference, fused = pair(2)
    assert list(reference.state_dict()) == list(fused.state_dict())
    x = points(80, 2)
    y = torch.rand(80, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    for model in (reference, fused):
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(3):
            optimizer.zero_grad()
            (model(x) - y).pow(2).mean().backward()
            optimizer.step()
    for key, value in reference.state_dict().items():
        close(fused.state_dict()[key], value, torch.float64)


@needs_triton
def test_compiled_model_traces_the_kernels_in_one_graph():
    """torch.compile cannot trace a jvp rule: compiled, the grid is one operator with the same
    forward and backward (fullgraph: a graph break would raise)."""
    reference, fused = pair(2, torch.float32)
    compiled = torch.compile(fused, backend="aot_eager", fullgraph=True)
    x = points(40, 2, torch.float32)
    for model in (reference, compiled):
        model.zero_grad()
        out = model(x)
        out.pow(2).sum().backward()
    close(out.detach(), reference(x).detach(), torch.float32)
    close(fused.tables.grad, reference.tables.grad, torch.float32)


@needs_triton
def test_backend_and_dtype_options_come_from_the_config(monkeypatch):
    grid = HashGridConfig(levels=2, log2_size=6, backend="triton", dtype="float16")
    cfg = ModelConfig(name="hashgrid", layers=2, width=8, hashgrid=grid)
    model = build_model(2, 1, cfg)
    assert model.backend == "triton" and model.read_dtype == torch.float16
    with pytest.raises(ValueError, match="model.hashgrid.backend"):
        HashGridConfig(backend="cuda")
    with pytest.raises(ValueError, match="model.hashgrid.dtype"):
        HashGridConfig(dtype="bfloat8")
    auto_grid = HashGridConfig(levels=2, log2_size=6, backend="auto")
    auto = build_model(2, 1, ModelConfig(name="hashgrid", layers=2, width=8, hashgrid=auto_grid))
    assert not auto._uses_triton(torch.zeros(1, 2))  # CPU tensors: the torch grid
    monkeypatch.delenv("TRITON_INTERPRET")
    with pytest.raises(ValueError, match="needs a GPU"):
        Config(model=cfg, train=TrainConfig(device="cpu"))


def test_without_triton_the_torch_grid_runs_and_triton_is_refused(monkeypatch):
    monkeypatch.setattr(hashgrid_triton, "available", lambda: False)
    with pytest.raises(ValueError, match="needs the triton package"):
        check_options("triton", "float32")
    grid = HashGrid(2, 1, layers=2, width=4, levels=2, log2_size=6, backend="auto")
    assert not grid._uses_triton(torch.zeros(3, 2)) and grid(torch.zeros(3, 2)).shape == (3, 1)
