"""Where a training step's time goes, measured without stalling the GPU to find out.

Reading a clock between the phases of a step would need a device synchronisation at each
boundary, and each one leaves the GPU idle while the host queues the next kernels. Instead the
timer records marks — CUDA events on a GPU, host clock readings on a CPU — and turns them into
seconds only when a block of steps is closed (at an evaluation or a checkpoint, which wait for
the device anyway). Summed over a block, the spans are the block's wall time on the device.

The timer also keeps the dearest step it has measured (the span from one step's first mark to
the next step's), which the training budget needs to decide whether one more step fits.
"""

import time

import torch

OFF_CLOCK = "capture"
"""Spans under this label (capturing a CUDA graph: once per shape, like compilation) are
reported but are not part of any step's cost nor of the training clock."""


class PhaseTimer:
    """Marks along a block of steps; each mark closes the span since the previous one under a label."""

    def __init__(self, device: torch.device, step_label: str = "loop"):
        self.cuda = device.type == "cuda"
        self.step_label = step_label
        """The label of each step's first mark: it delimits steps for ``dearest_step``."""
        self._marks: list[tuple[str, float | torch.cuda.Event]] = []
        self._opened_at = 0.0
        self._steps_seen = 0
        self._step_started: float | None = None
        self.dearest_step = 0.0
        """Seconds of the dearest step measured so far, the process's first step excepted (its
        one-off start-up — CUDA's lazy initialisation, torch.func's first trace — never
        recurs). On a CPU it is exact after every step; on a GPU it is known as of the last
        closed block."""

    def lap(self, label: str) -> None:
        """Close the span since the previous mark under ``label``; the first mark of a block
        only opens it."""
        now = time.perf_counter()
        if not self._marks:
            self._opened_at = now
        if self.cuda:
            mark = torch.cuda.Event(enable_timing=True)
            mark.record()
        else:
            mark = now
        if label == self.step_label and not self.cuda:
            self._step_done(now)
        self._marks.append((label, mark))

    def _step_done(self, now: float) -> None:
        """CPU: a new step starts at ``now``; the previous one (if any) ended there."""
        if self._step_started is not None:
            self._steps_seen += 1
            if self._steps_seen > 1:
                self.dearest_step = max(self.dearest_step, now - self._step_started)
        self._step_started = now

    def open_seconds(self) -> float:
        """Host seconds since the open block began (close() gives the device's exact figure)."""
        return time.perf_counter() - self._opened_at if self._marks else 0.0

    def close(self) -> dict[str, float]:
        """Seconds per label over the open block, waiting for the device to reach the last mark.
        The next ``lap`` opens a new block, so what runs in between (evaluation) is not counted."""
        marks, self._marks = self._marks, []
        spans: dict[str, float] = {}
        if not marks:
            return spans
        if self.cuda:
            marks[-1][1].synchronize()
        step_seconds: list[float] = []  # a span belongs to the step whose first mark it follows
        if marks[0][0] == self.step_label:
            step_seconds.append(0.0)
        for (_, start), (label, end) in zip(marks[:-1], marks[1:], strict=True):
            seconds = start.elapsed_time(end) / 1000.0 if self.cuda else end - start
            spans[label] = spans.get(label, 0.0) + seconds
            if step_seconds and label != OFF_CLOCK:
                step_seconds[-1] += seconds
            if label == self.step_label:
                step_seconds.append(0.0)
        if self.cuda:
            for seconds in step_seconds:
                self._steps_seen += 1
                if self._steps_seen > 1:
                    self.dearest_step = max(self.dearest_step, seconds)
        else:  # the block's last step ends at its last mark
            self._step_done(marks[-1][1])
            self._step_started = None
        return spans
