"""Every Triton kernel of the project compiled for a Hopper GPU (sm_90, the H100's and H200's),
on a machine without one: the interpreter runs a kernel's arithmetic but accepts code that
the compiler refuses (types, unsupported constructs), and GPU time is too scarce to find that
out there. The launchers run for real on CPU tensors with their kernels swapped for recorders,
so each compiled signature is the one a launch passes."""

import importlib
import os

import pytest
import torch

from nint_dist import triton_support

pytestmark = pytest.mark.skipif(not triton_support.available(), reason="triton is not installed")

DTYPES = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32", torch.float64: "fp64",
          torch.int32: "i32", torch.int64: "i64", torch.bool: "i1"}  # fmt: skip


@pytest.fixture(scope="module")
def compiled_modules():
    """The kernel modules imported with the compiler, not the interpreter."""
    before = os.environ.pop("TRITON_INTERPRET", None)
    from nint_dist import selection_triton
    from nint_dist.models import hashgrid_triton

    modules = [importlib.reload(selection_triton), importlib.reload(hashgrid_triton)]
    yield modules
    if before is not None:
        os.environ["TRITON_INTERPRET"] = before
        for module in modules:
            importlib.reload(module)


class Recorder:
    """Stands in for ``kernel[grid](...)`` and keeps what the launch passed."""

    def __init__(self, kernel, launches: list):
        self.kernel, self.launches = kernel, launches

    def __getitem__(self, grid):
        def launch(*args, **constexprs):
            self.launches.append((self.kernel, args, constexprs))

        return launch


def type_of(value) -> str:
    if isinstance(value, torch.Tensor):
        return "*" + DTYPES[value.dtype]
    if isinstance(value, bool):
        return "i1"
    if isinstance(value, int):
        return "i32" if -(2**31) <= value < 2**31 else ("i64" if value < 2**63 else "u64")
    return "fp32"


def compile_for_hopper(kernel, args: tuple, constexprs: dict) -> dict:
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    names = kernel.arg_names
    signature = {name: type_of(value) for name, value in zip(names, args, strict=False)}  # then constexprs
    signature |= {name: "constexpr" for name in constexprs}
    try:
        source = ASTSource(fn=kernel, signature=signature, constexprs=constexprs)
    except TypeError:  # older Triton names them constants
        source = ASTSource(fn=kernel, signature=signature, constants=constexprs)
    return triton.compile(source, target=GPUTarget("cuda", 90, 32)).asm


def record(monkeypatch, module, names: list[str]) -> list:
    launches: list = []
    for name in names:
        monkeypatch.setattr(module, name, Recorder(getattr(module, name), launches))
    return launches


def test_the_epoch_order_kernel_compiles(compiled_modules, monkeypatch):
    selection_triton = compiled_modules[0]
    launches = record(monkeypatch, selection_triton, ["_epoch_order_kernel"])
    for seed, epoch, num_points in ((3, 4, 2), (3, 5, 10_880), (2**40, 2**33, 1 << 30 | 5)):
        selection_triton.epoch_order(seed, epoch, torch.arange(5), num_points)
    assert len(launches) == 3
    signatures = set()
    for kernel, args, constexprs in launches:
        assert "cubin" in compile_for_hopper(kernel, args, constexprs)
        signatures.add(tuple(type_of(a) for a in args))
    assert len(signatures) == 2  # another epoch or signal is no new compile, a 64-bit seed is


@pytest.mark.parametrize(("dim", "dtype", "table_dtype"), [(2, torch.float32, torch.float32),
                                                           (3, torch.float32, torch.float16),
                                                           (1, torch.float64, torch.float64)])  # fmt: skip
def test_the_hash_grid_kernels_compile(compiled_modules, monkeypatch, dim, dtype, table_dtype):
    hashgrid_triton = compiled_modules[1]
    kernels = ["_forward_kernel", "_table_grad_kernel", "_coords_grad_kernel"]
    launches = record(monkeypatch, hashgrid_triton, kernels)
    coords = torch.rand(7, dim, dtype=dtype)
    rows = [3**dim, 5**dim, 64, 64]  # two dense levels, two hashed
    tables = torch.zeros(sum(rows), 2, dtype=table_dtype)
    starts = [sum(rows[:level]) for level in range(4)]
    level_info = torch.tensor([[2, 1, starts[0], rows[0]], [4, 1, starts[1], rows[1]], [8, 0, starts[2], 64],
                               [16, 0, starts[3], 64]], dtype=torch.int64)  # fmt: skip
    grad = torch.zeros(7, 8, dtype=dtype)
    hashgrid_triton._launch_forward(coords, tables, level_info)
    hashgrid_triton._launch_forward(coords, tables, level_info, torch.ones_like(coords))
    hashgrid_triton._launch_table_grad(coords, grad, level_info, tables)
    hashgrid_triton._launch_coords_grad(coords, tables, grad, level_info)
    assert len(launches) == 4
    for kernel, args, constexprs in launches:
        assert "cubin" in compile_for_hopper(kernel, args, constexprs)
