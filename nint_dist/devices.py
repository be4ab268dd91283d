"""The one rule for which device this process computes on: training in this process, rendering,
loading a model through the Python API and the benchmarks all ask here. (Ray Train workers are
handed theirs by Ray.)"""

import torch

from nint_dist.errors import UserError

DEVICES = ("auto", "cpu", "cuda")


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
