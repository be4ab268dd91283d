"""The hash grid's packed tables: each level holds exactly the rows its points can reach, and
checkpoints of the earlier layout (a full table per level) load and resume unchanged."""

import copy

import pytest
import torch

from nint_dist.models.hashgrid import HashGrid, interpolate, pack_optimizer_state


def grid_points(resolution: int, dim: int) -> torch.Tensor:
    """Every grid point of a level of this resolution, as coordinates in [-1, 1]: [(r+1)^D, D]."""
    axis = torch.arange(resolution + 1, dtype=torch.float64) / resolution * 2 - 1
    return torch.cartesian_prod(*[axis] * dim).reshape(-1, dim)


def unpack(grid: HashGrid, packed: torch.Tensor, rest: torch.Tensor | None = None) -> torch.Tensor:
    """``packed`` [Σ rows, F] in the layout before the levels were packed [levels, 2^log2_size,
    F]; the rows past a level's own count from ``rest`` (zeros by default)."""
    full = torch.zeros(grid.levels, grid.size, packed.shape[-1]) if rest is None else rest.clone()
    for level, rows in enumerate(grid.level_rows):
        full[level, :rows] = packed[grid.level_table(level)]
    return full


@pytest.mark.parametrize(
    ("dim", "log2_size", "resolutions", "rows"),
    [
        # 4², 6², 11² = 121 ≤ 256 are dense; 21² and 41² are hashed into 2^8 rows each
        (2, 8, [3, 5, 10, 20, 40], [16, 36, 121, 256, 256]),
        # 4³, 6³ = 216 ≤ 512 are dense; 11³ and beyond hashed into 2^9 rows
        (3, 9, [3, 5, 10, 20, 40], [64, 216, 512, 512, 512]),
        (1, 5, [3, 5, 10, 20, 40], [4, 6, 11, 21, 32]),
    ],
)
def test_levels_hold_their_own_rows_and_every_row_is_reachable(dim, log2_size, resolutions, rows):
    grid = HashGrid(dim, 1, layers=2, width=4, levels=5, log2_size=log2_size, base_resolution=3,
                    max_resolution=40).double()  # fmt: skip
    assert grid.resolutions == resolutions
    assert grid.level_rows == rows
    assert grid.tables.shape == (sum(rows), 2)
    for level, resolution in enumerate(resolutions):
        if (resolution + 1) ** dim > 2**log2_size:
            continue  # hashed
        # at its own grid points a dense level reads one row each, with weight 1: every row of
        # the level then has gradient 1 exactly when rows and grid points correspond one to one
        grid.zero_grad()
        grid.encode(grid_points(resolution, dim))[:, 2 * level].sum().backward()
        assert torch.allclose(grid.tables.grad[grid.level_table(level), 0], torch.ones(rows[level],
                              dtype=torch.float64), atol=1e-9), level  # fmt: skip


def test_a_checkpoint_of_full_tables_per_level_loads_into_the_packed_tables():
    torch.manual_seed(0)
    grid = HashGrid(3, 2, layers=2, width=8, levels=4, log2_size=9, base_resolution=2, max_resolution=20)
    torch.nn.init.uniform_(grid.tables, -1, 1)
    old = {key: value.clone() for key, value in grid.state_dict().items()}
    never_read = torch.randn(grid.levels, grid.size, 2)  # rows past a level's own count
    old["tables"] = unpack(grid, grid.tables.detach(), never_read)
    restored = HashGrid(3, 2, layers=2, width=8, levels=4, log2_size=9, base_resolution=2, max_resolution=20)
    restored.load_state_dict(old)
    x = torch.rand(100, 3) * 2 - 1
    assert torch.equal(restored(x), grid(x))


def test_training_resumes_from_a_checkpoint_of_full_tables_per_level():
    """Adam's moments are per entry: a checkpoint of the earlier layout holds them [levels,
    2^log2_size, F] too; resumed, the next step equals the uninterrupted run's."""
    kwargs = dict(layers=2, width=8, levels=4, log2_size=8, base_resolution=2, max_resolution=30)
    torch.manual_seed(0)
    grid = HashGrid(2, 1, **kwargs)
    adam = torch.optim.Adam(grid.parameters(), lr=1e-2, fused=True)
    x, y = torch.rand(64, 2) * 2 - 1, torch.rand(64, 1)

    def step(model, optimizer):
        optimizer.zero_grad()
        (model(x) - y).pow(2).mean().backward()
        optimizer.step()

    for _ in range(3):
        step(grid, adam)

    model_state = {**grid.state_dict(), "tables": unpack(grid, grid.tables.detach())}
    optimizer_state = adam.state_dict()
    tables_index = [name for name, _ in grid.named_parameters()].index("tables")
    moments = optimizer_state["state"][tables_index]
    optimizer_state["state"][tables_index] = {
        key: unpack(grid, value) if value.dim() == 2 else value for key, value in moments.items()
    }
    assert optimizer_state["state"][tables_index]["exp_avg"].dim() == 3  # the earlier layout
    resumed = HashGrid(2, 1, **kwargs)
    resumed_adam = torch.optim.Adam(resumed.parameters(), lr=1e-2, fused=True)
    resumed.load_state_dict(model_state)
    resumed_adam.load_state_dict(copy.deepcopy(optimizer_state))
    pack_optimizer_state(resumed, resumed_adam)
    step(grid, adam)
    step(resumed, resumed_adam)
    for (name, expected), got in zip(grid.named_parameters(), resumed.parameters(), strict=True):
        assert torch.equal(got, expected), name


def test_both_ways_of_interpolating_agree():
    """The batched products (CPUs) and the broadcast product and sum (elsewhere): same values,
    same gradients."""
    generator = torch.Generator().manual_seed(0)
    weight = torch.rand(3, 50, 8, dtype=torch.float64, generator=generator).requires_grad_(True)
    values = torch.randn(3, 50, 8, 2, dtype=torch.float64, generator=generator).requires_grad_(True)
    grad = torch.randn(3, 50, 2, dtype=torch.float64, generator=generator)
    results = []
    for batched in (True, False):
        out = interpolate(weight, values, batched)
        results.append((out, *torch.autograd.grad(out, (weight, values), grad)))
    expected = torch.einsum("lnc,lncf->lnf", weight, values)
    assert torch.allclose(results[0][0], expected, rtol=0, atol=1e-12)
    for got, want in zip(results[1], results[0], strict=True):
        assert torch.allclose(got, want, rtol=0, atol=1e-12)
