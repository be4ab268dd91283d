"""The one rule for which device this process computes on: training in this process, rendering,
loading a model through the Python API and the benchmarks all ask here. (Ray Train workers are
handed theirs by Ray.)"""

import ctypes
import functools
import platform

import torch

from nint_dist.errors import UserError

DEVICES = ("auto", "cpu", "cuda")
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


def resolve_device(requested: str | torch.device | None = "auto", key: str = "device") -> torch.device:
    """auto (or None): a GPU when this process sees one, else the CPU; cpu; cuda, refused with
    one line naming ``key`` (the option the user set) when no GPU is visible. A torch.device or
    a name such as cuda:1 is taken as it is."""
    if isinstance(requested, torch.device):
        return requested
    name = (requested or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"{key}={requested} but no GPU is visible; use {key}=cpu or auto")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UserError(f"{key}={requested}: not a device; use one of {', '.join(DEVICES)}") from None


@functools.cache
def keep_freed_cpu_memory() -> bool:
    """Let glibc's allocator keep the memory this process frees (blocks up to 32 MiB come from
    the heap, which is trimmed only past 256 MiB free) instead of handing it back to the OS.
    Training on a CPU frees and allocates tensors of megabytes at every pass; by default each
    is mapped afresh, and the page faults of touching it again cost more than the arithmetic
    on it (a SIREN step on the SDF volume 149 -> 131 CPU ms; BENCHMARKS.md). The heap's
    high-water mark stays reserved until the process ends. Once per process; False where
    the C library is not glibc."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL("libc.so.6")
    return bool(libc.mallopt(M_MMAP_THRESHOLD, 32 << 20) and libc.mallopt(M_TRIM_THRESHOLD, 256 << 20))
