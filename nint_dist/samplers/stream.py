"""Coordinates handed out in epochs: every coordinate once per epoch, in a fresh pseudo-random
order each epoch (``selection.epoch_order``), so that consecutive steps do not draw again what
was just drawn.

On a large signal at a small ratio a step sees 1–2% of the coordinates; independent draws per
step revisit some and leave others unseen (after one epoch's worth of draws, 1/e of the signal
has never been trained on). A hash grid learns a region's fine levels only where it is
trained, so covering the signal first can be worth much: on a 2.6 MP photograph at ratio 0.01
on a CPU, uniform sampling in epochs instead of independent draws gave +0.70 dB at equal
training seconds (on an easier one it was level; BENCHMARKS.md, "Large signals and other
modalities on the CPU").
"""

import torch

from nint_dist.selection import epoch_order


class EpochStream:
    """The next coordinates of the current epoch. A take that would run past the epoch's end
    starts the next epoch instead (the few coordinates left are not visited that epoch), so
    one take never holds a coordinate twice. The state is one counter, checkpointed by the
    sampler that owns the stream; the order is a function of (seed, epoch) alone, the same on
    every worker."""

    def __init__(self, salt: int):
        self.salt = salt
        self.consumed = 0
        """Positions handed out so far, over all epochs (epoch = consumed // N)."""

    def take(self, num_points: int, count: int, seed: int, device: torch.device) -> torch.Tensor:
        """``count`` (≤ N) distinct global indices [count], in epoch order."""
        epoch, offset = divmod(self.consumed, num_points)
        if offset + count > num_points:
            epoch, offset = epoch + 1, 0
        positions = torch.arange(offset, offset + count, dtype=torch.int64, device=device)
        self.consumed = epoch * num_points + offset + count
        return epoch_order(seed + self.salt, epoch, positions, num_points)
