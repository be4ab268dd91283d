"""Ratio schedules and re-selection intervals of the reference code, as pure functions of the step.

Steps count from 0; ``total_steps`` is the configured run length T.
"""

import math

RATIO_SCHEDULES = ("constant", "linear", "step")
INTERVALS = ("dense", "dense2", "incremental", "decremental")


def ratio_at(schedule: str, ratio: float, step: int, total_steps: int) -> float:
    """Fraction of all coordinates selected at ``step``.

    constant: r0.  linear: r0 + (t/T)(1 - r0).  step: 10 equal stages rising from r0,
    r_t = min(1, r0 + floor(t / (T/10)) * (1 - r0) / 10).
    """
    t, total = step, max(total_steps, 1)
    if schedule == "constant":
        return ratio
    if schedule == "linear":
        return min(1.0, ratio + (t / total) * (1.0 - ratio))
    if schedule == "step":
        stage = math.floor(t / (total / 10))
        return min(1.0, ratio + stage * (1.0 - ratio) / 10)
    raise ValueError(f"unknown ratio schedule {schedule!r}; choose one of {RATIO_SCHEDULES}")


def reselect_at(interval: str, step: int, total_steps: int) -> bool:
    """Whether a sampler draws a new selection at ``step`` (else it reuses the last one).

    The test is on the global step modulo the interval, as in the reference code.
    dense: every step.  dense2: every 5th step.  incremental: dense for the first 25%, then
    five equal phases with intervals 10, 20, 30, 40, 50.  decremental: the mirror image, five
    phases with intervals 50 … 10 over the first 75%, dense in the last 25%.
    """
    total = max(total_steps, 1)
    if interval == "dense":
        return True
    if interval == "dense2":
        return step % 5 == 0
    if interval == "incremental":
        warm = 0.25 * total
        if step < warm:
            return True
        phase = min(4, int((step - warm) / (0.75 * total / 5)))
        return step % (10 * (phase + 1)) == 0
    if interval == "decremental":
        cool = 0.75 * total
        if step >= cool:
            return True
        phase = min(4, int(step / (cool / 5)))
        return step % (10 * (5 - phase)) == 0
    raise ValueError(f"unknown interval {interval!r}; choose one of {INTERVALS}")


def num_selected(ratio: float, num_points: int) -> int:
    """Batch size for a ratio: floor(ratio * N), at least one coordinate."""
    return max(1, min(num_points, int(ratio * num_points)))
