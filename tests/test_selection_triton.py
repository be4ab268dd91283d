"""The epoch order's Triton kernel against the PyTorch version, element for element, run by
Triton's interpreter on the CPU (on a GPU ``selection.epoch_order`` takes the kernel)."""

import importlib
import os

import pytest
import torch

from nint_dist import selection, triton_support

pytestmark = pytest.mark.skipif(not triton_support.available(), reason="triton is not installed")


@pytest.fixture(scope="module")
def kernel():
    """The kernel module imported under TRITON_INTERPRET=1, and again without it afterwards."""
    before = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    from nint_dist import selection_triton

    yield importlib.reload(selection_triton).epoch_order
    if before is None:
        del os.environ["TRITON_INTERPRET"]
    else:
        os.environ["TRITON_INTERPRET"] = before
    importlib.reload(selection_triton)


@pytest.mark.parametrize("num_points", [1, 2, 3, 7, 64, 1000, 4097, 65_536, 2**20 + 1, 3 * 2**40 + 7])
@pytest.mark.parametrize(("seed", "epoch"), [(0, 0), (7, 3), (2**40 + 5, 2**33), (-3, 1)])
def test_the_kernel_computes_the_epoch_order(kernel, num_points, seed, epoch):
    generator = torch.Generator().manual_seed(num_points)
    if num_points <= 4097:
        positions = torch.arange(num_points)
    else:  # a sample of positions, unsorted, some repeated
        positions = torch.randint(0, num_points, (3000,), generator=generator)
    got = kernel(seed, epoch, positions, num_points)
    assert torch.equal(got, selection.epoch_order(seed, epoch, positions, num_points))


def test_no_positions_is_an_empty_order(kernel):
    assert kernel(1, 2, torch.arange(0), 100).shape == (0,)
