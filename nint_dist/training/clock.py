"""The run's clocks and the time budget.

- the training clock: device seconds of training steps, measured in blocks by ``PhaseTimer``
  without stalling the GPU; evaluation, logging, compilation and graph capture stay off it;
- the wall clock: everything, all attempts of a resumed run;
- ``TimeBudget``: ``train.max_seconds`` on the training clock, a step started only if the
  dearest step so far still fits;
- ``CpuSeconds``: process CPU seconds inside the steps, for comparisons on a shared machine
  (a metric, and optionally the budget instead of the training clock).
"""

import time
from collections.abc import Callable

import torch

from nint_dist.comm import Comm
from nint_dist.steptimer import OFF_CLOCK, PhaseTimer

PHASES = ("score", "select", "exchange", "train", "loop")
"""The step's phases as the timer labels them."""


class Clock:
    """Training, wall and compile seconds of one worker."""

    def __init__(self, device: torch.device):
        self.wall_started = time.perf_counter()
        self.wall_before = 0.0
        """Wall seconds of the attempts before a resume."""
        self.timer = PhaseTimer(device)
        self.train_seconds = 0.0
        self.compile_seconds = 0.0
        self.phase_seconds = {f"{phase}_s": 0.0 for phase in PHASES}
        """Training seconds by phase in this process (the summary's ``total_*``)."""

    def close_block(self) -> dict[str, float]:
        """Seconds per phase of the steps since the last call (waits for the device); they join
        the training clock. Capturing CUDA graphs stays off it, like compilation. Call it
        before anything that must stay off the training clock."""
        spans = self.timer.close()
        self.compile_seconds += spans.pop(OFF_CLOCK, 0.0)
        self.train_seconds += sum(spans.values())
        for phase, seconds in spans.items():
            self.phase_seconds[f"{phase}_s"] += seconds
        return spans

    def training(self) -> float:
        """Training seconds so far, the open block estimated from the host clock."""
        return self.train_seconds + self.timer.open_seconds()

    def wall(self) -> float:
        """Wall seconds of the run so far: set-up, training, evaluation and logging (all
        attempts of a resumed run)."""
        return self.wall_before + time.perf_counter() - self.wall_started

    def state_dict(self) -> dict:
        return {"train_seconds": self.train_seconds, "wall_seconds": self.wall()}

    def load_state_dict(self, state: dict) -> None:
        self.train_seconds = float(state["train_seconds"])
        self.wall_before = float(state.get("wall_seconds", 0.0))


class TimeBudget:
    """``train.max_seconds`` on the training clock (None: no budget)."""

    def __init__(self, max_seconds: float | None, clock: Clock, comm: Comm):
        self.max_seconds, self.clock, self.comm = max_seconds, clock, comm

    def out_of_time(self) -> bool:
        """Whether the next step would overrun the budget, a budget and not a hint: a step is
        started only if the training clock plus the dearest step measured so far stays within
        it. The dearest, not a typical one, because steps differ in cost (NTK refreshes, EVOS's
        fitness steps) and which kind comes next is decided inside the step; the process's
        first step is left out (its start-up never recurs, see ``PhaseTimer.dearest_step``), so
        a first step longer than the whole budget still runs. The open block's clock is the
        host's estimate, short of the device's by the steps the host has queued ahead (many
        with CUDA graphs); in the last stretch (two dearest steps and 5% of the budget, at
        least a second) the block is closed at every step (which waits for the device), so the
        decision uses the device's figure. The slowest worker decides for all. Collective when
        a budget is set."""
        budget, clock = self.max_seconds, self.clock
        if budget is None:
            return False
        if clock.training() + 2 * clock.timer.dearest_step >= budget - max(0.05 * budget, 1.0):
            clock.close_block()
        return self.comm.all_reduce_max(clock.training() + clock.timer.dearest_step) > budget


class CpuSeconds:
    """Process CPU seconds spent inside training steps: a clock that other jobs on a shared
    machine do not move. Reported as ``cpu_seconds`` at every evaluation; with ``budget`` it
    ends the run once that many CPU seconds are spent (instead of ``train.max_seconds``)."""

    def __init__(self, budget: float | None = None):
        self.budget = budget
        self.seconds = 0.0

    def timed(self, step: Callable[[], tuple]) -> tuple:
        start = time.process_time()
        out = step()
        self.seconds += time.process_time() - start
        return out

    def out_of_time(self) -> bool:
        return self.budget is not None and self.seconds >= self.budget

    def metrics(self, loop) -> dict[str, float]:
        return {"cpu_seconds": self.seconds}
