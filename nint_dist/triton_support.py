"""Whether the project's Triton kernels can run.

Triton is optional. Its kernels run on CUDA tensors, or on CPU tensors under Triton's
interpreter (``TRITON_INTERPRET=1`` set before triton is imported), which is how the tests
check them without a GPU. The package is looked up once, at import: PyTorch 2.11's
``torch.compile`` refuses to trace an importlib lookup inside a compiled forward pass.
"""

import importlib.util
import os

import torch

_AVAILABLE = importlib.util.find_spec("triton") is not None


def available() -> bool:
    """Whether triton is installed (the kernels then run on CUDA, or on a CPU when interpreted)."""
    return _AVAILABLE


def runs_on(tensor: torch.Tensor) -> bool:
    """Whether a kernel can run on ``tensor``'s device in this process."""
    return _AVAILABLE and (tensor.is_cuda or os.environ.get("TRITON_INTERPRET") == "1")
