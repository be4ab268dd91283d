"""Blocks of a model that must not run under autocast."""

from contextlib import AbstractContextManager, nullcontext

import torch


def outside_autocast(device: torch.device) -> AbstractContextManager:
    """A block computed in its inputs' dtype whatever autocast is active around it: for products
    whose results are phases of hundreds of radians, which bfloat16 or float16 get wrong by a
    large part of a period. A no-op on devices without autocast (e.g. 'meta')."""
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device.type, enabled=False)
    return nullcontext()
