"""Where a training step's time goes, measured without stalling the GPU to find out.

Reading a clock between the phases of a step would need a device synchronisation at each
boundary, and each one leaves the GPU idle while the host queues the next kernels. Instead the
timer records marks — CUDA events on a GPU, host clock readings on a CPU — and turns them into
seconds only when a block of steps is closed (at an evaluation or a checkpoint, which wait for
the device anyway). Summed over a block, the spans are the block's wall time on the device.
"""

import time

import torch


class PhaseTimer:
    """Marks along a block of steps; each mark closes the span since the previous one under a label."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self._marks: list[tuple[str, float | torch.cuda.Event]] = []
        self._opened_at = 0.0

    def lap(self, label: str) -> None:
        """Close the span since the previous mark under ``label``; the first mark of a block
        only opens it."""
        if not self._marks:
            self._opened_at = time.perf_counter()
        if self.cuda:
            mark = torch.cuda.Event(enable_timing=True)
            mark.record()
        else:
            mark = time.perf_counter()
        self._marks.append((label, mark))

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
        for (_, start), (label, end) in zip(marks[:-1], marks[1:], strict=True):
            seconds = start.elapsed_time(end) / 1000.0 if self.cuda else end - start
            spans[label] = spans.get(label, 0.0) + seconds
        return spans
