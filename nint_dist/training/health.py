"""The non-finite watch: training on NaN would only spend the rest of the budget, so the first
step whose loss or selection scores are not finite is noted on the device at every step
(no host read) and checked at evaluations, which stop the run the same way on every worker."""

from pathlib import Path

import torch

from nint_dist.comm import Comm
from nint_dist.errors import RunFailed

NEVER = float(2**62)


class NonFiniteWatch:
    def __init__(self, comm: Comm, device: torch.device, checkpoints: Path):
        self.comm, self.checkpoints = comm, checkpoints
        self.first = torch.full((2,), -1, dtype=torch.int64, device=device)
        """First step whose training loss / selection scores were not finite (−1: none yet)."""

    def watch(self, step: int, loss: torch.Tensor, nonfinite_scores: torch.Tensor) -> None:
        """Note ``step`` if its loss or the scores of its selection (a flag the selection context
        sets on the device, cleared here) are not finite, without waiting for the device."""
        bad = torch.stack([~torch.isfinite(loss).all(), nonfinite_scores.to(loss.device)])
        nonfinite_scores.zero_()
        noted = self.first
        self.first = torch.where(bad & (noted < 0), torch.full_like(noted, step), noted)

    def check(self) -> None:
        """``RunFailed`` (the same on every worker) once any worker's loss or scores were not
        finite, naming the earliest such step. Collective."""
        firsts = [float(f) if f >= 0 else NEVER for f in self.first.tolist()]
        loss_step, score_step = (-self.comm.all_reduce_max(-f) for f in firsts)  # earliest worker's
        found = [
            (int(f), what) for f, what in ((loss_step, "training loss"), (score_step, "selection scores"))
        ]
        found = [(f, what) for f, what in found if f < NEVER]
        if found:
            step, what = min(found)
            raise RunFailed(
                f"step {step}: the {what} became non-finite (NaN or inf): the model diverged; lower"
                f" train.lr (checkpoints so far kept in {self.checkpoints})"
            )
