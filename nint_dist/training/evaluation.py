"""Measuring the fit during training, off the training clock: MSE/PSNR over the whole signal
(exact) or over a fixed random subset, SI-SNR for audio, and per-worker peak memory and load
balance; whether a log step's evaluation still fits in ``log.eval_share``.

A new metric of every evaluation goes into ``Evaluation.evaluate`` (computed from sums over
each worker's rows, reduced in the one all-reduce there); a metric only some drivers want
(SSIM in the benchmarks) is an ``extra_metrics`` callable handed to the ``Loop``.
"""

import resource

import torch

from nint_dist import scoring, selection
from nint_dist.comm import Comm
from nint_dist.metrics import psnr_from_mse, si_snr_from_sums
from nint_dist.shard import Shard, ShardContext
from nint_dist.signal import flat_to_coords, to_unit

EVAL_SUBSET_STEP = -1
"""The (seed, step) generator of the evaluation subset: a step no training step uses."""


def peak_memory_bytes(device: torch.device) -> float:
    """Peak memory of this worker: the CUDA allocator's peak on a GPU, the process's peak
    resident set on a CPU."""
    if device.type == "cuda":
        return float(torch.cuda.max_memory_allocated(device))
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024.0


def eval_subset(ctx: ShardContext, count: int, seed: int) -> torch.Tensor | None:
    """Rows of this worker's shard in the run's fixed evaluation subset: ``count`` distinct
    coordinates drawn once from the run's seed, the same for any worker count. None when the
    signal has no more points than that (every evaluation is then exact)."""
    n = ctx.num_points
    if count == 0 or count >= n:
        return None
    generator = selection.step_generator(seed, EVAL_SUBSET_STEP, ctx.shard.device)
    rows, _ = ctx.local_part(torch.sort(selection.distinct_draw(n, count, generator)).values)
    return rows


class Evaluation:
    """Evaluations of one worker's shard; ``evaluate`` is collective."""

    def __init__(
        self,
        model: torch.nn.Module,
        shard: Shard,
        ctx: ShardContext,
        comm: Comm,
        pass_size: int,
        eval_points: int,
        seed: int,
        share: float | None,
        always_exact: bool = False,
    ):
        self.model, self.shard, self.comm, self.pass_size = model, shard, comm, pass_size
        self.share = share
        """Most evaluation seconds as a share of the training clock (None: no limit)."""
        self.always_exact = always_exact
        """Measure the whole signal at every evaluation (benchmarks comparing curves)."""
        self.eval_points = eval_points
        self.rows = eval_subset(ctx, eval_points, seed)
        """Rows of this worker's shard in the fixed subset (None: every evaluation is exact)."""
        self.seconds = 0.0
        """Wall seconds spent in evaluations and logging since the process started."""

    def fits(self, train_seconds: float) -> bool:
        """Whether a log step's evaluation is made: evaluation and logging so far stay within
        ``log.eval_share`` of the training clock (rows are then skipped, never the exact
        evaluations at checkpoints and at the end). The same answer on every worker."""
        over = self.share is not None and self.seconds > self.share * train_seconds
        return self.comm.all_reduce_max(float(over)) == 0.0

    def evaluate(
        self, loss: torch.Tensor, train_seconds: float, samples: int, exact: bool = True
    ) -> dict[str, float]:
        """MSE/PSNR over the whole signal (``exact``) or over the fixed evaluation subset, the
        mean training loss, and each worker's peak memory, training seconds and samples
        trained on (``samples``: load balance). The squared errors are summed on the device and
        read back once. Collective."""
        s, world, rank, spec = self.shard, self.comm.world_size, self.comm.rank, self.shard.spec
        rows = None if exact or self.always_exact else self.rows
        # audio: SI-SNR too, from sums over the same pass (metrics.si_snr_from_sums)
        sums = scoring.error_and_moment_sums if spec.kind == "audio" else scoring.squared_error_sum
        if rows is None:
            points = spec.num_points
            errors = sums(self.model, s.coords, s.targets, s.size, self.pass_size)
        else:
            flat = rows + s.start
            points = self.eval_points
            errors = sums(
                self.model,
                lambda lo, hi: flat_to_coords(flat[lo:hi], spec, s.dtype),
                lambda lo, hi: to_unit(s.values[rows[lo:hi]], spec, s.dtype),
                rows.numel(),
                self.pass_size,
            )
        squared, moments = errors.view(-1)[0], errors.view(-1)[1:].double().cpu()
        per_worker = torch.zeros(3, world, dtype=torch.float64)
        per_worker[:, rank] = torch.tensor([peak_memory_bytes(s.device), train_seconds, float(samples)])
        device_part = torch.stack([squared.double(), loss.detach().double().to(squared.device)])
        stats = torch.cat([device_part.cpu(), per_worker.view(-1), moments])
        if world > 1:
            stats = stats.to(s.device)
            self.comm.all_reduce_sum_([stats])
            stats = stats.cpu()
        memory, seconds, samples_by_worker = stats[2 : 2 + 3 * world].view(3, world)
        values = points * spec.channels
        mse = float(stats[0]) / values
        extra = {}
        if moments.numel():
            extra["si_snr"] = si_snr_from_sums(values, *(float(v) for v in stats[2 + 3 * world :]))
        return {
            **extra,
            "loss": float(stats[1]) / world,
            "mse": mse,
            "psnr": psnr_from_mse(mse),
            "psnr_points": float(points),
            "peak_memory_max_bytes": float(memory.max()),
            **{f"memory/worker_{r}_bytes": float(memory[r]) for r in range(world)},
            "balance_samples_max_over_mean": float(
                samples_by_worker.max() / samples_by_worker.mean().clamp_min(1)
            ),
            "balance_seconds_max_over_mean": float(seconds.max() / seconds.mean().clamp_min(1e-12)),
        }
