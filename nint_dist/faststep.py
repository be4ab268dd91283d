"""The training pass and ``nint``'s pool scoring replayed from CUDA graphs.

On a GPU a small-batch step is hundreds of short kernels, and the host's launching, not the
arithmetic, sets its time. A CUDA graph records a pass's kernels once, for fixed shapes and
memory addresses, and replays them with one launch and no host synchronisation. Captured here:

- the training pass of one worker: gather the selected targets from the shard on the device,
  forward, loss, backward into gradient tensors that stay in place, and for a sampler that
  keeps a map of the fit's error (``error-map``) each sample's residual. It is the loop's own
  pass (``Loop.local_pass``), so it computes what the eager step computes. The optimizer
  step (fused Adam: one multi-tensor kernel) runs after the replay, outside the graph, so
  the learning rate and the optimizer's state stay the loop's to change and to checkpoint;
- a residual ranking over a pool of fixed size (``nint``'s scoring pass).

The selection runs eagerly before each replay and its indices are copied into the graph's
static input, so the selections are the eager path's. A size seen for the first time is
captured off the training clock (like compilation: the span is marked ``OFF_CLOCK``); at most
``MAX_SIZES`` sizes are kept per pass and other sizes run eagerly, which covers samplers that
alternate two batch sizes and falls back cleanly under ratio schedules.
"""

import warnings
from collections.abc import Callable

import torch

from nint_dist import scoring
from nint_dist.shard import ShardContext
from nint_dist.steptimer import OFF_CLOCK, PhaseTimer

AUTOCAST_PRECISIONS = ("half", "bf16")

Outputs = torch.Tensor | tuple[torch.Tensor | None, ...]
"""What a captured pass returns: tensors the graph writes at every replay."""

MAX_SIZES = 2
"""Captured sizes kept per pass (each holds its own activation memory)."""
WARMUP_PASSES = 3
"""Eager passes on a side stream before a capture (lazy initialisation, allocator warm-up)."""


def graphs_wanted(
    enabled: bool,
    device: torch.device,
    world_size: int,
    compiled: bool,
    schedule: str,
    autocast: bool = False,
) -> bool:
    """Whether ``train.cuda_graphs`` captures graphs in this run: only on CUDA, for
    one worker (several exchange data-dependent counts every step), without torch.compile
    (which captures its own), with a constant ratio (a schedule changes the batch size) and
    without autocast in training (its cast cache does not survive a capture)."""
    return (
        enabled
        and device.type == "cuda"
        and world_size == 1
        and not compiled
        and schedule == "constant"
        and not autocast
    )


class Captured:
    """One pass captured for one input size: ``replay(index)`` runs it on new indices."""

    def __init__(self, compute: Callable[[torch.Tensor], Outputs], index: torch.Tensor, reset: Callable):
        self.index = index.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP_PASSES):
                reset()
                compute(self.index)
        torch.cuda.current_stream().wait_stream(side)
        reset()
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.output = compute(self.index)

    def replay(self, index: torch.Tensor) -> Outputs:
        self.index.copy_(index)
        self.graph.replay()
        return self.output


class GraphCache:
    """Captured passes of one computation by input size; ``run`` returns None for a size it
    will not capture (the caller then runs the pass eagerly)."""

    def __init__(
        self,
        compute: Callable[[torch.Tensor], Outputs],
        timer: PhaseTimer,
        label: str,
        reset: Callable[[], None] = lambda: None,
        capture: Callable[..., Captured] = Captured,
    ):
        self.compute, self.timer, self.label, self.reset = compute, timer, label, reset
        self.capture = capture
        self.captured: dict[int, Captured] = {}
        self.refused: set[int] = set()
        """Sizes whose capture failed (an operation that cannot be captured): run eagerly."""

    def run(self, index: torch.Tensor) -> Outputs | None:
        size = index.numel()
        entry = self.captured.get(size)
        if entry is None:
            if len(self.captured) >= MAX_SIZES or size == 0 or size in self.refused:
                return None
            self.timer.lap(self.label)
            try:
                entry = self.captured[size] = self.capture(self.compute, index, self.reset)
            except RuntimeError as e:  # e.g. a host synchronisation inside the pass
                self.refused.add(size)
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                warnings.warn(
                    f"{self.label} pass of {size} runs eagerly: it cannot be captured ({e})", stacklevel=2
                )
                return None
            finally:
                self.timer.lap(OFF_CLOCK)
        return entry.replay(index)


class GraphedTraining:
    """The training loop's pass from graphs. ``run(part)`` leaves the gradients in the
    parameters' ``.grad`` and returns the loss, or None where the eager path must run."""

    def __init__(
        self,
        run_pass: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]],
        params: list[torch.Tensor],
        optimizer: torch.optim.Optimizer,
        timer: PhaseTimer,
        capture: Callable[..., Captured] = Captured,
    ):
        self.params = params
        self.grads: dict[int, list[torch.Tensor | None]] = {}
        self.cache = GraphCache(
            run_pass, timer, "train", reset=lambda: optimizer.zero_grad(set_to_none=True), capture=capture
        )

    def run(
        self, part: torch.Tensor, weights: torch.Tensor | None, errors: list[torch.Tensor] | None = None
    ) -> torch.Tensor | None:
        """The loss, or None; appends the samples' residuals to ``errors`` when given (the pass
        must then compute them: ``run_pass`` returns (loss, residuals or None))."""
        if weights is not None:
            return None
        size = part.numel()
        out = self.cache.run(part)
        if out is None:
            return None
        loss, residuals = out
        if size not in self.grads:  # the graph writes these tensors at every replay
            self.grads[size] = [p.grad for p in self.params]
        for p, grad in zip(self.params, self.grads[size], strict=True):
            p.grad = grad  # the eager path or another size may have replaced or dropped them
        if errors is not None:
            errors.append(residuals.clone())
        return loss.clone()


class GraphedScoringContext(ShardContext):
    """The selection context whose pool residual ranking (``residual_l1_at``) replays a graph
    for precisions 'full' and 'tf32'; autocast ('half', 'bf16') keeps the eager pass (autocast's
    cast cache and graph memory do not mix)."""

    capture: Callable[..., Captured] = Captured

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pool_graphs: dict[str, GraphCache] = {}

    def residual_l1_at(self, rows: torch.Tensor, precision: str = "full") -> torch.Tensor:
        if precision in AUTOCAST_PRECISIONS:
            return super().residual_l1_at(rows, precision)
        if precision not in self.pool_graphs:

            def compute(static_rows: torch.Tensor, precision: str = precision) -> torch.Tensor:
                coords_of, targets_of = self._rows_fns(static_rows)
                return scoring.residual_l1(
                    self.model, coords_of, targets_of, static_rows.numel(), self.pass_size, precision
                )

            self.pool_graphs[precision] = GraphCache(compute, self.timer, "score", capture=self.capture)
        scores = self._timed("residual_pool", lambda: self._replayed(rows, precision))
        return scores if scores is not None else super().residual_l1_at(rows, precision)

    def _replayed(self, rows: torch.Tensor, precision: str) -> torch.Tensor | None:
        scores = self.pool_graphs[precision].run(rows)
        return None if scores is None else scores.clone()
