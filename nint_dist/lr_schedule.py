"""Learning-rate schedules: the rate of step ``t`` (0-based) as a plain function of the step, so a
resumed run needs no scheduler state to continue exactly — the step count in the checkpoint is
the whole state.

A linear warm-up over the first ``warmup`` steps rises from ``lr / warmup`` to ``lr``; the
schedule then runs over the remaining steps:

- constant: ``lr``;
- cosine: from ``lr`` down to ``lr_min`` at the last step (half a cosine period);
- step: ``lr`` times ``decay`` for each milestone (a fraction of all steps) already passed;
- exponential: ``lr · decay ** (t / total)``, ``decay`` reached at the last step.
"""

import math
from collections.abc import Sequence

LR_SCHEDULES = ("constant", "cosine", "step", "exponential")


def lr_at(
    schedule: str,
    step: int,
    total: int,
    lr: float,
    warmup: int = 0,
    lr_min: float = 0.0,
    decay: float = 0.1,
    milestones: Sequence[float] = (),
) -> float:
    """The learning rate of 0-based step ``step`` of ``total``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    if schedule == "constant":
        return lr
    span = max(total - warmup, 1)
    progress = min(max(step - warmup, 0) / span, 1.0)
    if schedule == "cosine":
        return lr_min + (lr - lr_min) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "step":
        passed = sum(1 for m in milestones if step >= round(m * total))
        return lr * decay**passed
    if schedule == "exponential":
        return lr * decay**progress
    raise ValueError(f"unknown learning-rate schedule {schedule!r}; one of {', '.join(LR_SCHEDULES)}")
