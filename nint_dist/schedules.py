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
    """Whether a sampler draws a new selection at ``step`` (else it reuses the last one), with
    the reference code's integer arithmetic, so the re-selection steps are its own for any T.

    dense: every step.  dense2: every 5th step.
    incremental: dense for the first int(T/4) steps (and the first phase), then phases of
    (T − int(T/4)) // 5 steps with intervals 10, 20, 30, … (a 6th phase, interval 60, when T is
    not a multiple of the phase length).
    decremental: the first int(3T/4) steps in five phases of int(3T/4) // 5 steps with intervals
    40, 30, 20, 10 and then dense; dense from int(3T/4) on (steps left over after the fifth
    phase test the step modulo 10).
    Runs too short for a phase of one step (T ≤ 6, where the reference code divides by zero)
    re-select at every step.
    """
    if interval == "dense":
        return True
    if interval == "dense2":
        return step % 5 == 0
    if interval == "incremental":
        startup = int(total_steps * 0.25)
        phase_len = (total_steps - startup) // 5
        if phase_len == 0 or step // phase_len == 0 or step < startup:
            return True
        return step % (10 * (max(1, step - startup) // phase_len + 1)) == 0
    if interval == "decremental":
        dense_start = int(total_steps * 0.75)
        phase_len = dense_start // 5
        if step >= dense_start or phase_len == 0:
            return True
        remaining = 5 - step // phase_len - 1  # 4, 3, 2, 1, 0; −1 past the fifth phase
        return remaining == 0 or step % abs(10 * remaining) == 0
    raise ValueError(f"unknown interval {interval!r}; choose one of {INTERVALS}")


def num_selected(ratio: float, num_points: int) -> int:
    """Batch size for a ratio: floor(ratio * N), at least one coordinate."""
    return max(1, min(num_points, int(ratio * num_points)))
