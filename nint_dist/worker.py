"""The per-worker training loop. Ray Train runs ``train_worker`` on every worker; the local
backend runs ``run`` in the calling process with one worker. Both are this one code path.

A step reads: score and select (collective) → split the selection evenly → exchange targets
(all-to-all) → forward/backward on this worker's part (DDP all-reduce) → update → metrics.
"""

import json
import os
import resource
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from nint_dist import checkpoint, scoring, selection
from nint_dist.comm import Comm
from nint_dist.config import Config, from_dict, to_yaml
from nint_dist.errors import RunFailed
from nint_dist.faststep import GraphedScoringContext, GraphedTraining, graphs_wanted
from nint_dist.lr_schedule import lr_at
from nint_dist.metrics import psnr_from_mse, si_snr_from_sums
from nint_dist.models import build_model
from nint_dist.monitor import AudioMonitor, ImageMonitor, log_histograms
from nint_dist.outputs import export_reconstruction
from nint_dist.plan import RunPlan
from nint_dist.runlog import STOP_FILE, RunLog
from nint_dist.samplers import Sampler, Selection, build_sampler
from nint_dist.schedules import num_selected, ratio_at
from nint_dist.selection import balanced_bounds, ddp_scaled_loss
from nint_dist.shard import Shard, ShardContext, load_shard
from nint_dist.signal import ATTRS_KEY, flat_to_coords, from_unit, open_signal, shard_rows, to_unit
from nint_dist.steptimer import OFF_CLOCK, PhaseTimer

DTYPES = {"float32": torch.float32, "float64": torch.float64}
AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}
EVAL_SUBSET_STEP = -1
"""The (seed, step) generator of the evaluation subset: a step no training step uses."""


@dataclass
class Runtime:
    """Where this worker sits in the group, and how a checkpoint reaches storage."""

    rank: int
    world_size: int
    device: torch.device
    report_checkpoint: Callable[[Path | None, str, dict], None] | None = None
    """Ray Train: hand a checkpoint folder written by worker 0 (None on other workers) to
    ``ray.train.report``, which copies it to ``RUN_DIR/checkpoints/NAME``. Collective. None for
    the local backend, which writes the folder in place."""


def ray_runtime() -> Runtime:
    import ray.train
    import ray.train.torch

    def report(folder: Path | None, name: str, metrics: dict) -> None:
        checkpoint = None if folder is None else ray.train.Checkpoint.from_directory(str(folder))
        ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=name)

    ctx = ray.train.get_context()
    return Runtime(ctx.get_world_rank(), ctx.get_world_size(), ray.train.torch.get_device(), report)


FAILURE = "failure.json"
"""RUN_DIR/failure.json: why a run stopped that must not be retried (a diverged model, no intact
checkpoint to resume from). Worker 0 writes it; the driver turns it into one line, exit 1."""


def train_worker(config: dict) -> None:
    """Ray Train's ``train_loop_per_worker``, given ``{"config": …, "plan": …}`` (the user's
    config and the driver's plan, as dicts); after a restart it resumes from the newest
    checkpoint. A ``RunFailed`` ends the worker normally (every worker meets it at the same
    point) with the reason in ``failure.json``: restarting would only fail the same way again."""
    cfg, plan, rt = from_dict(config["config"]), RunPlan.from_dict(config["plan"]), ray_runtime()
    try:
        run(cfg, plan, rt)
    except RunFailed as e:
        if rt.rank == 0:
            (Path(plan.run_dir) / FAILURE).write_text(json.dumps({"error": str(e)}) + "\n")
    except RuntimeError as e:
        text = str(e).lower()
        if isinstance(e, torch.distributed.DistError) or "gloo" in text or "timed out" in text:
            # a collective timed out or lost a peer: this worker waited, so it is not the one that
            # hung; the record lets the driver name the one that did
            record_process(plan.run_dir, rt.rank, collective_failed=True)
        raise


def wrap_for_update(model: nn.Module, rt: Runtime) -> nn.Module:
    """The module the optimizer step goes through: DDP for several workers, else the model."""
    if rt.world_size == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [rt.device] if rt.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


class Trainer:
    """Everything one worker holds for a run."""

    def __init__(self, cfg: Config, rt: Runtime):
        self.wall_started = time.perf_counter()
        self.wall_before = 0.0
        """Wall seconds of the attempts before a resume."""
        self.cfg, self.rt = cfg, rt
        self.dtype = DTYPES[cfg.train.dtype]
        self.array, self.spec = open_signal(cfg.data.path)
        self.comm = Comm(rt.rank, rt.world_size)
        self.shard: Shard = load_shard(
            self.array, self.spec, rt.world_size, rt.rank, rt.device, self.dtype, cfg.data.verify
        )
        torch.manual_seed(cfg.train.seed)
        if rt.device.type == "cuda":  # both ways: an earlier fit in this process must not leak
            torch.backends.cuda.matmul.allow_tf32 = cfg.train.tf32
        self.model = build_model(len(self.spec.grid), self.spec.channels, cfg.model).to(rt.device, self.dtype)
        self.update_model = wrap_for_update(self.model, rt)
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=cfg.train.lr, fused=rt.device.type == "cuda"
        )
        if cfg.train.precision == "fp16" and rt.device.type != "cuda":
            raise ValueError("train.precision=fp16 needs GPUs (use bf16 on CPUs)")
        self.scaler = torch.amp.GradScaler("cuda") if cfg.train.precision == "fp16" else None
        """fp16 only: scales the loss so small gradients survive float16; its state is checkpointed."""
        self.compile_seconds = 0.0
        if cfg.train.compile:
            self.update_model = torch.compile(self.update_model)
            self.compile_seconds = self._warm_up()
        self.sampler: Sampler = build_sampler(cfg.sampler)
        self.timer = PhaseTimer(rt.device)
        self.chunk = cfg.sampler.pass_size_on(rt.device.type)
        autocast = cfg.train.precision in AUTOCAST
        self.graphs = graphs_wanted(
            cfg.train.cuda_graphs,
            rt.device,
            rt.world_size,
            cfg.train.compile,
            cfg.sampler.ratio_schedule,
            autocast,
        )
        self.ctx = (GraphedScoringContext if self.graphs else ShardContext)(
            self.model, self.shard, self.comm, self.chunk, cfg.train.seed, cfg.train.steps, self.timer
        )
        self.graphed = None
        if self.graphs:
            params = list(self.model.parameters())
            self.graphed = GraphedTraining(self.shard_pass, params, self.optimizer, self.timer)
        self.eval_rows = self._eval_subset()
        self.eval_seconds = 0.0
        """Wall seconds spent in evaluations and logging since the process started."""
        self.step = 0
        self.train_seconds = 0.0
        self.part_sizes = 0
        self.first_nonfinite = torch.full((2,), -1, dtype=torch.int64, device=rt.device)
        """First step whose training loss / selection scores were not finite (−1: none yet); kept
        on the device, read at evaluations (``check_finite``)."""
        resumed = checkpoint.intact_or_none(cfg.run.dir)
        if resumed is not None:
            self.restore(checkpoint.load(resumed, rt.device))
        self.last_checkpoint = time.monotonic()
        """Wall clock of the last checkpoint (or of the start): the time cadence counts from it."""
        self.log = None
        self.monitor = None
        if rt.rank == 0:
            self.log = RunLog(
                cfg.run.dir,
                cfg.log.tensorboard,
                cfg.log.save_selection,
                purge_step=self.step + 1,
                config_text=to_yaml(cfg),
            )
            if cfg.log.tensorboard and len(self.spec.grid) == 2:
                self.monitor = ImageMonitor(self.array, self.spec, rt.device, self.dtype, self.chunk)
            elif cfg.log.tensorboard and self.spec.kind == "audio":
                self.monitor = AudioMonitor(self.array, self.spec, rt.device, self.dtype, self.chunk)

    def _warm_up(self) -> float:
        """Compile the training graph off the training clock: one forward/backward on a batch of
        the first step's size, gradients discarded, parameters untouched. Collective (DDP)."""
        t0 = time.perf_counter()
        k = num_selected(self.cfg.sampler.ratio, self.spec.num_points)
        lo, hi = balanced_bounds(k, self.rt.world_size, self.rt.rank)
        coords = self.shard.coords(0, min(hi - lo, self.shard.size))
        self.update_model(coords).pow(2).mean().backward()
        self.optimizer.zero_grad(set_to_none=True)
        if self.rt.device.type == "cuda":
            torch.cuda.synchronize(self.rt.device)
        return time.perf_counter() - t0

    def train_step(self) -> tuple[Selection, torch.Tensor]:
        """One optimizer step. Collective: every worker calls it every step. With one worker
        nothing here waits for the GPU (several wait for the exchange's counts): the phases are
        marked on ``self.timer`` and read when a block of steps is closed."""
        rt, timer = self.rt, self.timer
        timer.lap("loop")  # since the last step ended: the loop's own bookkeeping
        sel = self.sampler.select(self.ctx, self.step)
        timer.lap("select")
        k = sel.indices.numel()
        bounds = [balanced_bounds(k, rt.world_size, r) for r in range(rt.world_size)]
        part = sel.indices[bounds[rt.rank][0] : bounds[rt.rank][1]]
        weights = None if sel.weights is None else sel.weights[bounds[rt.rank][0] : bounds[rt.rank][1]]
        errors: list[torch.Tensor] | None = [] if getattr(self.sampler, "observes", False) else None
        loss = None
        if self.graphed is not None and errors is None:  # one worker: the pass gathers its targets itself
            timer.lap("exchange")
            loss = self.graphed.run(part, weights)
        if loss is None:
            route = self.ctx.route(part, bounds, sel.indices)
            stored = self.ctx.exchange_targets(route)
            timer.lap("exchange")
            self.optimizer.zero_grad(set_to_none=True)
            loss = self.accumulate_gradients(part, stored, weights, k, errors)
        lr = self.learning_rate(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self.scaler is None:
            self.optimizer.step()
        else:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        timer.lap("train")
        if errors is not None:  # the training pass's residuals, free, for samplers that keep a map
            part_errors = torch.cat(errors) if errors else torch.empty(0, device=rt.device)
            self.sampler.observe(self.ctx, sel.indices, self.ctx.gather_parts(part_errors, bounds))
            timer.lap("select")
        self.part_sizes += part.numel()
        self.step += 1
        return sel, loss.detach()

    def learning_rate(self, step: int) -> float:
        t = self.cfg.train
        return lr_at(
            t.lr_schedule, step, t.steps, t.lr, t.warmup_steps, t.lr_min, t.lr_decay, t.lr_milestones
        )

    def watch_finite(self, loss: torch.Tensor) -> None:
        """Note the step if this step's loss or the scores of its selection are not finite, without
        waiting for the device."""
        bad = torch.stack([~torch.isfinite(loss).all(), self.ctx.nonfinite_scores.to(loss.device)])
        self.ctx.nonfinite_scores.zero_()
        noted = self.first_nonfinite
        self.first_nonfinite = torch.where(bad & (noted < 0), torch.full_like(noted, self.step), noted)

    def check_finite(self) -> None:
        """Stop the run (``RunFailed``, the same on every worker) once any worker's loss or scores
        were not finite: training on NaN would only spend the rest of the budget. Collective."""
        never = float(2**62)
        firsts = [float(f) if f >= 0 else never for f in self.first_nonfinite.tolist()]
        loss_step, score_step = (-self.comm.all_reduce_max(-f) for f in firsts)  # earliest worker's
        found = [
            (int(f), what) for f, what in ((loss_step, "training loss"), (score_step, "selection scores"))
        ]
        found = [(f, what) for f, what in found if f < never]
        if found:
            step, what = min(found)
            if self.log is not None:
                self.log.close()
            raise RunFailed(
                f"step {step}: the {what} became non-finite (NaN or inf): the model diverged; lower"
                f" train.lr (checkpoints so far kept in {Path(self.cfg.run.dir) / checkpoint.FOLDER})"
            )

    def shard_pass(self, part: torch.Tensor) -> torch.Tensor:
        """One worker's training pass on its own rows (``part`` of global indices, one worker):
        targets gathered on the device, then ``accumulate_gradients``. What the CUDA graph of
        the fast step captures."""
        stored = self.shard.values[part - self.shard.start]
        return self.accumulate_gradients(part, stored, None, part.numel())

    def close_block(self) -> dict[str, float]:
        """Seconds per phase of the steps since the last call (waits for the device); they join
        the training clock. Capturing CUDA graphs stays off it, like compilation."""
        spans = self.timer.close()
        self.compile_seconds += spans.pop(OFF_CLOCK, 0.0)
        self.train_seconds += sum(spans.values())
        return spans

    def wall_clock(self) -> float:
        """Wall seconds of the run so far: set-up, training, evaluation and logging (all
        attempts of a resumed run)."""
        return self.wall_before + time.perf_counter() - self.wall_started

    def clock(self) -> float:
        """Training seconds so far, the open block estimated from the host clock."""
        return self.train_seconds + self.timer.open_seconds()

    def accumulate_gradients(
        self,
        part: torch.Tensor,
        stored: torch.Tensor,
        weights: torch.Tensor | None,
        num_selected: int,
        errors: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Forward/backward over this worker's part in passes of at most ``train.micro_batch``
        samples. The scaled loss is a sum over samples, so the accumulated gradient equals one
        pass over the whole part, while activation memory stays bounded by the pass size. DDP
        all-reduces once, on the last pass; every worker makes exactly one such pass (also
        with an empty part). Returns this worker's loss; appends each pass's per-sample
        mean_c |f − y| to ``errors`` when given."""
        size = self.cfg.train.micro_batch
        starts = list(range(0, part.numel(), size)) or [0]
        total = torch.zeros((), dtype=self.dtype, device=self.rt.device)
        precision = self.cfg.train.precision
        autocast = (
            torch.autocast(self.rt.device.type, dtype=AUTOCAST[precision])
            if precision in AUTOCAST
            else nullcontext()
        )
        for i, lo in enumerate(starts):
            hi = lo + size
            last = i == len(starts) - 1
            defer = self.update_model.no_sync() if self.rt.world_size > 1 and not last else nullcontext()
            with defer:
                with autocast:
                    prediction = self.update_model(flat_to_coords(part[lo:hi], self.spec, self.dtype))
                prediction = prediction.to(self.dtype)  # the loss in training precision, not autocast's
                target = to_unit(stored[lo:hi], self.spec, self.dtype)
                piece = None if weights is None else weights[lo:hi]
                loss = ddp_scaled_loss(prediction, target, num_selected, self.rt.world_size, piece)
                (loss if self.scaler is None else self.scaler.scale(loss)).backward()
                if errors is not None:
                    errors.append((prediction.detach() - target).abs().mean(dim=-1))
            total += loss.detach()
        return total

    def _eval_subset(self) -> torch.Tensor | None:
        """Rows of this worker's shard in the run's fixed evaluation subset: ``log.eval_points``
        distinct coordinates drawn once from the run's seed, the same for any worker count.
        None when the signal has no more points than that (every evaluation is then exact)."""
        count, n = self.cfg.log.eval_points, self.spec.num_points
        if count == 0 or count >= n:
            return None
        generator = selection.step_generator(self.cfg.train.seed, EVAL_SUBSET_STEP, self.rt.device)
        rows, _ = self.ctx.local_part(torch.sort(selection.distinct_draw(n, count, generator)).values)
        return rows

    def evaluate(self, loss: torch.Tensor, exact: bool = True) -> dict[str, float]:
        """MSE/PSNR over the whole signal (``exact``) or over the fixed evaluation subset, the
        mean training loss, and each worker's peak memory, training seconds and samples
        trained on (load balance). The squared errors are summed on the device and read back
        once. Collective."""
        s, world, spec = self.shard, self.rt.world_size, self.spec
        rows = None if exact else self.eval_rows
        # audio: SI-SNR too, from sums over the same pass (metrics.si_snr_from_sums)
        sums = scoring.error_and_moment_sums if spec.kind == "audio" else scoring.squared_error_sum
        if rows is None:
            points = spec.num_points
            errors = sums(self.model, s.coords, s.targets, s.size, self.chunk)
        else:
            points = self.cfg.log.eval_points
            flat = rows + s.start
            errors = sums(
                self.model,
                lambda lo, hi: flat_to_coords(flat[lo:hi], spec, self.dtype),
                lambda lo, hi: to_unit(s.values[rows[lo:hi]], spec, self.dtype),
                rows.numel(),
                self.chunk,
            )
        squared, moments = errors.view(-1)[0], errors.view(-1)[1:].double().cpu()
        per_worker = torch.zeros(3, world, dtype=torch.float64)
        per_worker[:, self.rt.rank] = torch.tensor(
            [peak_memory_bytes(self.rt.device), self.train_seconds, float(self.part_sizes)]
        )
        device_part = torch.stack([squared.double(), loss.detach().double().to(squared.device)])
        stats = torch.cat([device_part.cpu(), per_worker.view(-1), moments])
        if world > 1:
            stats = stats.to(self.rt.device)
            self.comm.all_reduce_sum_([stats])
            stats = stats.cpu()
        values = points * spec.channels
        mse = float(stats[0]) / values
        memory, seconds, samples = stats[2 : 2 + 3 * world].view(3, world)
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
            "balance_samples_max_over_mean": float(samples.max() / samples.mean().clamp_min(1)),
            "balance_seconds_max_over_mean": float(seconds.max() / seconds.mean().clamp_min(1e-12)),
        }

    def evaluation_fits(self) -> bool:
        """Whether a log step's evaluation is made: evaluation and logging so far stay within
        ``log.eval_share`` of the training clock (rows are then skipped, never the exact
        evaluations at checkpoints and at the end). The same answer on every worker."""
        share = self.cfg.log.eval_share_on(self.rt.device.type)
        over = share is not None and self.eval_seconds > share * self.clock()
        return self.comm.all_reduce_max(float(over)) == 0.0

    def out_of_time(self, close: Callable[[], None]) -> bool:
        """Whether the next step would overrun ``train.max_seconds``, a budget and not a hint:
        a step is started only if the training clock plus the dearest step measured so far
        stays within it. The dearest, not a typical one, because steps differ in cost (NTK
        refreshes, EVOS's fitness steps) and which kind comes next is decided inside the step;
        the process's first step is left out (its start-up never recurs, see
        ``PhaseTimer.dearest_step``), so a first step longer than the whole budget still runs.
        The open block's clock is the host's estimate, short of the device's by the steps the
        host has queued ahead (many with CUDA graphs); in the last stretch (two dearest steps and 5% of
        the budget, at least a second) the block is closed at every step (``close``, which
        waits for the device), so the decision uses the device's figure. The slowest worker
        decides for all. Collective when a budget is set."""
        budget = self.cfg.train.max_seconds
        if budget is None:
            return False
        dearest = self.timer.dearest_step
        if self.clock() + 2 * dearest >= budget - max(0.05 * budget, 1.0):
            close()
        return self.comm.all_reduce_max(self.clock() + self.timer.dearest_step) > budget

    def checkpoint_due_or_stop(self, logged: bool) -> tuple[bool, bool]:
        """(the time cadence asks for a checkpoint, the driver asked the run to stop). The same
        answer on every worker: with several it is agreed on at log steps only (one small
        all-reduce), with one worker it is looked at every step."""
        if self.rt.world_size > 1 and not logged:
            return False, False
        every_s = self.cfg.train.checkpoint_every_s
        due = bool(every_s) and time.monotonic() - self.last_checkpoint >= every_s
        stop = (Path(self.cfg.run.dir) / STOP_FILE).exists()
        flags = self.comm.all_reduce_max(2.0 * stop + due)
        return flags >= 1.0, flags >= 2.0

    def state(self) -> dict:
        """Everything a resumed run needs to continue exactly as an uninterrupted one. Sampler
        state is global (the same on every worker), so worker 0's copy is the run's."""
        return {
            "step": self.step,
            "train_seconds": self.train_seconds,
            "part_sizes": self.part_sizes,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "sampler": self.sampler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "wall_seconds": self.wall_clock(),
            "config": self.cfg.to_dict(),
            **({"grad_scaler": self.scaler.state_dict()} if self.scaler is not None else {}),
        }

    def restore(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.sampler.load_state_dict(state["sampler"])
        torch.set_rng_state(state["torch_rng"].cpu())
        self.step = int(state["step"])
        self.train_seconds = float(state["train_seconds"])
        self.part_sizes = int(state.get("part_sizes", 0))
        self.wall_before = float(state.get("wall_seconds", 0.0))
        if self.scaler is not None and "grad_scaler" in state:
            self.scaler.load_state_dict(state["grad_scaler"])

    def save_checkpoint(self, metrics: dict) -> None:
        """Worker 0 writes the state; under Ray Train it is reported (every worker reports, as
        Ray requires) and Ray copies it into the run directory. Collective under Ray."""
        name = checkpoint.step_name(self.step)
        report = self.rt.report_checkpoint
        self.last_checkpoint = time.monotonic()
        if report is None:
            if self.rt.rank == 0:
                checkpoint.save_local(Path(self.cfg.run.dir), self.step, self.state())
                checkpoint.prune(self.cfg.run.dir, self.cfg.train.keep_checkpoints)
            return
        folder = None
        if self.rt.rank == 0:
            folder = Path(tempfile.mkdtemp(prefix="nint-ckpt-"))
            checkpoint.write_state(self.state(), folder)
        try:
            report(folder, name, {"step": self.step, **{k: v for k, v in metrics.items() if "/" not in k}})
        finally:
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)

    def fit(self) -> dict | None:
        cfg = self.cfg
        timings = {f"{phase}_s": 0.0 for phase in ("score", "select", "exchange", "train", "loop")}
        since_log = {"samples": 0, "seconds": 0.0, "steps": 0, "bytes": dict(self.comm.bytes_sent)}
        ddp_bytes = sum(p.numel() * p.element_size() for p in self.model.parameters())
        result: dict[str, float] = {}

        def tally_block() -> None:  # before anything that must stay off the training clock
            for phase, seconds in self.close_block().items():
                timings[f"{phase}_s"] += seconds
                since_log["seconds"] += seconds

        while self.step < cfg.train.steps:
            sel, loss = self.train_step()
            self.watch_finite(loss)
            since_log["samples"] += sel.indices.numel()
            since_log["steps"] += 1
            if self.log is not None:
                self.log.selection(self.step, sel.indices)
            if self.monitor is not None:
                self.monitor.add_selection(sel.indices)
            finished = self.step >= cfg.train.steps or self.out_of_time(tally_block)
            timed, stop = (
                (False, False) if finished else self.checkpoint_due_or_stop(self.step % cfg.log.every == 0)
            )
            every = cfg.train.checkpoint_every
            checkpoint_due = not finished and (timed or stop or bool(every and self.step % every == 0))
            if finished or (self.step % cfg.log.every == 0 and (checkpoint_due or self.evaluation_fits())):
                tally_block()
                evaluation_started = time.perf_counter()
                steps = since_log["steps"]
                traffic = {  # this worker's payload per step, by collective (DDP's gradients included)
                    f"bytes_per_step/{kind}": (sent - since_log["bytes"][kind]) / steps
                    for kind, sent in self.comm.bytes_sent.items()
                }
                traffic["bytes_per_step/ddp_gradients"] = float(ddp_bytes if self.rt.world_size > 1 else 0)
                result = self.evaluate(loss, exact=bool(finished or checkpoint_due))
                self.check_finite()
                result.update(traffic)
                result["samples_per_s"] = since_log["samples"] / max(since_log["seconds"], 1e-12)
                since_log = {"samples": 0, "seconds": 0.0, "steps": 0, "bytes": dict(self.comm.bytes_sent)}
                images = finished or self.step % cfg.log.images_every == 0
                if self.log is not None:
                    if self.monitor is not None and images:
                        result.update(self.monitor.log(self.log.writer, self.step, self.model))
                    if self.log.writer is not None and images:
                        log_histograms(self.log.writer, self.step, self.ctx.last_scores)
                    self.log.metrics(self._row(sel, result, timings))
                self.eval_seconds += time.perf_counter() - evaluation_started
            if checkpoint_due:
                tally_block()
                self.save_checkpoint(result)
            if stop:  # SIGINT/SIGTERM on the driver: keep what was trained, end without final files
                if self.log is not None:
                    self.log.close()
                return None
            if finished:
                break
        tally_block()
        if not result:  # resumed at or past the last step: measure what the checkpoint holds
            result = self.evaluate(torch.zeros((), device=self.rt.device))
        extra = self.write_reconstruction()
        self.save_checkpoint(result)
        if self.log is None:
            return None
        summary = {
            "psnr": result["psnr"],
            "mse": result["mse"],
            "loss": result["loss"],
            "steps": self.step,
            "train_seconds": self.train_seconds,
            "wall_seconds": self.wall_clock(),
            "eval_seconds": self.eval_seconds,
            "ms_per_step": 1000.0 * self.train_seconds / max(self.step, 1),
            "compile_seconds": self.compile_seconds,
            "workers": self.rt.world_size,
            "device": self.rt.device.type,
            "device_name": (
                torch.cuda.get_device_name(self.rt.device) if self.rt.device.type == "cuda" else "cpu"
            ),
            "sampler": cfg.sampler.name,
            "num_points": self.spec.num_points,
            "peak_memory_max_bytes": result["peak_memory_max_bytes"],
            **({"ssim": result["ssim"]} if "ssim" in result else {}),
            **{f"total_{k}": v for k, v in timings.items()},
            **extra,
        }
        self.log.final(summary)
        self.log.close()
        return summary

    def _row(self, sel: Selection, result: dict, timings: dict) -> dict:
        ratio = ratio_at(
            self.cfg.sampler.ratio_schedule, self.cfg.sampler.ratio, self.step - 1, self.cfg.train.steps
        )
        return {
            "step": self.step,
            **result,
            "train_seconds": self.train_seconds,
            "wall_seconds": self.wall_clock(),
            "lr": self.optimizer.param_groups[0]["lr"],
            "ratio": ratio,
            "num_selected": int(sel.indices.numel()),
            **{f"share_{name}": n / max(sel.indices.numel(), 1) for name, n in sel.shares.items()},
            **{f"time_{k}": v / self.step for k, v in timings.items()},
        }

    def write_reconstruction(self) -> dict[str, float]:
        """Each worker writes its own rows of ``reconstruction.zarr`` (shards are chunk-aligned,
        so no two workers touch one chunk); worker 0 then exports the modality's files and
        returns its extra final metrics. Collective."""
        import zarr

        path = Path(self.cfg.run.dir) / "reconstruction.zarr"
        if self.rt.rank == 0:
            zarr.create_array(
                store=str(path),
                shape=self.array.shape,
                chunks=self.array.chunks,
                dtype=self.array.dtype,
                zarr_format=3,
                overwrite=True,
                attributes={ATTRS_KEY: self.spec.to_attrs()},  # the source's checksums do not apply
            )
        self.comm.barrier()
        s, out = self.shard, zarr.open_array(str(path), mode="r+")
        row_lo, row_hi = shard_rows(self.spec, self.rt.world_size, self.rt.rank)
        for lo in range(row_lo, row_hi, self.spec.chunk_rows):  # a chunk row at a time: bounded memory
            hi = min(lo + self.spec.chunk_rows, row_hi)
            first = (lo - row_lo) * self.spec.points_per_row
            count = (hi - lo) * self.spec.points_per_row
            coords = lambda a, b, first=first: s.coords(first + a, first + b)  # noqa: E731
            values = scoring.predict(self.model, coords, count, self.chunk).float().cpu().numpy()
            out[lo:hi] = from_unit(values, self.spec, self.array.dtype).reshape(
                hi - lo, *self.array.shape[1:]
            )
        self.comm.barrier()
        if self.rt.rank == 0:
            return export_reconstruction(self.spec, path, Path(self.cfg.run.dir), source=self.array)
        return {}


def peak_memory_bytes(device: torch.device) -> float:
    """Peak memory of this worker: the CUDA allocator's peak on a GPU, the process's peak
    resident set on a CPU."""
    if device.type == "cuda":
        return float(torch.cuda.max_memory_allocated(device))
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024.0


def record_process(run_dir: str, rank: int, **extra) -> None:
    """``RUN_DIR/workers/rank_R.json``: which process and host run rank R (for operators, e.g. to
    find a stuck worker), how many times the rank was started (Ray Train restarts), and
    ``extra`` facts of this start (``collective_failed``: this worker saw a collective fail)."""
    folder = Path(run_dir) / "workers"
    folder.mkdir(exist_ok=True)
    path = folder / f"rank_{rank}.json"
    try:
        before = json.loads(path.read_text())
    except (OSError, ValueError):
        before = {}
    record = {"pid": os.getpid(), "host": socket.gethostname()}
    if before.get("pid") == record["pid"] and extra:  # more about this start
        record = {**before, **extra}
    else:
        record["starts"] = int(before.get("starts", 0)) + 1
    path.write_text(json.dumps(record))


def run(cfg: Config, plan: RunPlan, rt: Runtime) -> dict | None:
    """Fit the signal as ``plan`` says; returns the summary on worker 0, None elsewhere."""
    record_process(plan.run_dir, rt.rank)
    # the Trainer reads the signal and the run directory from its config
    planned = replace(cfg, data=replace(cfg.data, path=plan.signal), run=replace(cfg.run, dir=plan.run_dir))
    return Trainer(planned, rt).fit()
