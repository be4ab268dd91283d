"""The training loop of one worker: ``Loop.run`` reads top to bottom.

Each step: select (every worker scores its rows; one exact global top-k) → exchange (each
worker's balanced part of the selection fetched from its owners, one all-to-all) → accumulate
(forward/backward in micro-batches; DDP all-reduces the gradient) → apply (the optimizer step).
Around the steps the components act at their moments:

=================  =====================================  =========================
moment             what                                   where
=================  =====================================  =========================
every step         non-finite watch, selection tallies    ``health``, ``reporting``
every step         time budget                            ``clock``
log step / end     evaluation, row, TensorBoard           ``evaluation``, ``reporting``
cadence / stop     checkpoint, stop request               ``checkpoints``
end                reconstruction files, final.json       ``export``, ``reporting``
=================  =====================================  =========================

Drivers other than a run (benchmarks, tests) build a ``Loop`` with the options they need
(``export``, ``extra_metrics``, ``cpu_seconds``, ``budget``, ``always_exact``) and call
``run()``, or ``step()`` for one step at a time.
"""

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import torch

from nint_dist.comm import Comm
from nint_dist.config import Config
from nint_dist.devices import keep_freed_cpu_memory
from nint_dist.errors import RunFailed
from nint_dist.faststep import GraphedScoringContext, GraphedTraining, graphs_wanted
from nint_dist.plan import RunPlan
from nint_dist.samplers import Sampler, Selection, build_sampler
from nint_dist.schedules import num_selected
from nint_dist.selection import balanced_bounds
from nint_dist.shard import ShardContext, load_rows
from nint_dist.signal import open_signal
from nint_dist.training.checkpoints import Checkpoints
from nint_dist.training.clock import Clock, CpuSeconds, TimeBudget
from nint_dist.training.evaluation import Evaluation
from nint_dist.training.exchange import Exchange
from nint_dist.training.export import write_reconstruction
from nint_dist.training.health import NonFiniteWatch
from nint_dist.training.reporting import Reporting
from nint_dist.training.update import DTYPES, Update

if TYPE_CHECKING:
    from nint_dist.worker import Runtime


class Budget(Protocol):
    def out_of_time(self) -> bool: ...


Metric = Callable[["Loop"], dict[str, float]]
"""An extra metric of every evaluation: the loop in, named values out (worker 0's are logged)."""


class Loop:
    """One worker's run: the signal's rows this worker owns, the model and its update, the
    sampler, and the components the loop calls. Building it resumes from the newest intact
    checkpoint in the plan's run directory. Collective where noted: every worker of the
    group makes the same calls."""

    def __init__(
        self,
        cfg: Config,
        plan: RunPlan,
        rt: "Runtime",
        *,
        export: bool = True,
        extra_metrics: Sequence[Metric] = (),
        always_exact: bool = False,
        cpu_seconds: CpuSeconds | None = None,
        budget: Budget | None = None,
    ):
        """``export``: write the reconstruction at the end; ``extra_metrics``: added to every
        evaluation; ``always_exact``: every evaluation over the whole signal; ``cpu_seconds``:
        count the steps' CPU seconds (reported as ``cpu_seconds``); ``budget``: what ends the
        run early in place of ``train.max_seconds`` on the training clock."""
        self.plan, self.rt = plan, rt
        if rt.device.type == "cpu":
            keep_freed_cpu_memory()
        self.clock = Clock(rt.device)
        self.array, self.spec = open_signal(plan.signal)
        self.cfg = cfg = cfg.settled(self.spec.kind)
        """The run's config with what depends on the signal settled (``sampler.name=auto``)."""
        self.comm = Comm(rt.rank, rt.world_size)
        self.rows = plan.rows[rt.rank]
        """[start, stop) rows of the signal's first axis this worker owns."""
        dtype = DTYPES[cfg.train.dtype]
        self.shard = load_rows(self.array, self.spec, self.rows, rt.device, dtype, cfg.data.verify)
        torch.manual_seed(cfg.train.seed)  # before the model draws its weights
        self.update = Update(cfg, self.spec, rt.world_size, rt.device)
        self.model = self.update.model
        if cfg.train.compile:
            self.clock.compile_seconds = self.update.compile(self._first_batch())
        self.sampler: Sampler = build_sampler(cfg.sampler)
        self.pass_size = cfg.sampler.pass_size_on(rt.device.type)
        """Samples per scoring pass (the selection's, ``sampler.pass_size``)."""
        graphs = graphs_wanted(
            cfg.train.cuda_graphs,
            rt.device,
            rt.world_size,
            cfg.train.compile,
            cfg.sampler.ratio_schedule,
            self.update.autocast,
        )
        context = GraphedScoringContext if graphs else ShardContext
        self.ctx = context(
            self.model,
            self.shard,
            self.comm,
            self.pass_size,
            cfg.train.seed,
            cfg.train.steps,
            self.clock.timer,
        )
        self.exchange = Exchange(self.shard, self.comm, plan.rows)
        self.graphed = None
        """The training pass replayed from CUDA graphs (one worker on a GPU), else None."""
        self.residuals_wanted = self.sampler.observes or self.update.emphasis is not None
        """Whether a step hands on its samples' residuals: to the sampler's map, the emphasis."""
        if graphs:
            params = list(self.model.parameters())
            wanted = self.residuals_wanted

            def local_pass(part: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
                return self.local_pass(part, wanted)

            self.graphed = GraphedTraining(local_pass, params, self.update.optimizer, self.clock.timer)
        eval_size = cfg.log.eval_pass_size_on(rt.device.type)  # evaluation, export, preview
        self.evaluation = Evaluation(
            self.model,
            self.shard,
            self.ctx,
            self.comm,
            eval_size,
            cfg.log.eval_points,
            cfg.train.seed,
            cfg.log.eval_share_on(rt.device.type),
            always_exact,
        )
        self.extra_metrics = list(extra_metrics)
        self.cpu_seconds = cpu_seconds
        self.budget: Budget = budget or TimeBudget(cfg.train.max_seconds, self.clock, self.comm)
        self.export = export
        self.checkpoints = Checkpoints(plan.run_dir, cfg.train, self.comm, rt.report_checkpoint)
        self.health = NonFiniteWatch(self.comm, rt.device, self.checkpoints.folder)
        self.steps_done = 0
        self.part_sizes = 0
        """Samples this worker trained on (load balance)."""
        resumed = self.checkpoints.resume_state(rt.device)
        if resumed is not None:
            self.restore(resumed)
        self.checkpoints.start_cadence()  # the time cadence counts from now, not from the last attempt
        self.reporting = Reporting(
            cfg, plan.run_dir, self.comm, self.array, self.spec, self.model, eval_size, self.steps_done
        )

    # ------------------------------------------------------------------ the loop

    def run(self) -> dict | None:
        """Train to ``train.steps`` (or the budget); returns the summary on worker 0, None
        elsewhere and when the driver asked the run to stop. Collective."""
        cfg, result = self.cfg, {}
        while self.steps_done < cfg.train.steps:
            sel, loss = self.step()
            step = self.steps_done
            self.health.watch(step, loss, self.ctx.nonfinite_scores)
            self.reporting.selected(step, sel.indices)
            finished = step >= cfg.train.steps or self.budget.out_of_time()
            log_step = step % cfg.log.every == 0
            save, stop = self.checkpoints.requested(step, finished, log_step)
            if finished or (log_step and (save or self.evaluation.fits(self.clock.training()))):
                images = finished or step % cfg.log.images_every == 0
                result = self.log_step(sel, loss, exact=finished or save, images=images)
            if save:
                self.clock.close_block()
                self.checkpoints.save(step, self.state, result)
            if stop:  # SIGINT/SIGTERM on the driver: keep what was trained, end without final files
                self.reporting.close()
                return None
            if finished:
                break
        return self.finish(result)

    def step(self) -> tuple[Selection, torch.Tensor]:
        """One optimizer step: (the selection, this worker's loss). Collective."""
        if self.cpu_seconds is not None:
            return self.cpu_seconds.timed(self._step)
        return self._step()

    def _step(self) -> tuple[Selection, torch.Tensor]:
        # With one worker nothing here waits for the GPU (several wait for the exchange's
        # counts): the phases are marked on the timer and read when a block is closed.
        timer = self.clock.timer
        timer.lap("loop")  # since the last step ended: the loop's own bookkeeping
        sel = self.sampler.select(self.ctx, self.steps_done)
        timer.lap("select")
        part = self.exchange.split(sel.indices, sel.weights)
        errors: list[torch.Tensor] | None = [] if self.residuals_wanted else None
        loss = None
        if self.graphed is not None:  # one worker: the pass gathers its targets itself
            timer.lap("exchange")
            loss = self.graphed.run(part.indices, part.weights, errors)
        if loss is None:
            stored = self.exchange.targets(self.exchange.route(part, sel.indices))
            timer.lap("exchange")
            self.update.optimizer.zero_grad(set_to_none=True)
            loss = self.update.accumulate(part.indices, stored, part.weights, sel.indices.numel(), errors)
        self.update.apply(self.steps_done)
        timer.lap("train")
        if errors is not None:  # the training pass's residuals, free
            mine = torch.cat(errors) if errors else torch.empty(0, device=self.rt.device)
            self.update.measured(mine, sel.indices.numel(), self.comm)
            if self.sampler.observes:
                self.sampler.observe(self.ctx, sel.indices, self.exchange.gather(mine, part.bounds))
            timer.lap("select")
        self.part_sizes += part.indices.numel()
        self.steps_done += 1
        return sel, loss.detach()

    # ------------------------------------------------------------------ its moments

    def log_step(self, sel: Selection, loss: torch.Tensor, exact: bool, images: bool) -> dict[str, float]:
        """Evaluate (off the training clock), stop a diverged run, write the row. Collective."""
        self.clock.close_block()
        started = time.perf_counter()
        figures = self.reporting.throughput(self.rt.world_size, self.clock.train_seconds)
        result = self.evaluate(loss, exact)
        try:
            self.health.check()
        except RunFailed:
            self.reporting.close()
            raise
        result.update(figures)
        self.reporting.row(
            self.steps_done, sel, result, self.clock, self.update.lr, self.model, self.ctx.last_scores, images
        )
        self.evaluation.seconds += time.perf_counter() - started
        return result

    def evaluate(self, loss: torch.Tensor, exact: bool = True) -> dict[str, float]:
        """The evaluation's metrics plus the driver's extra ones. Collective."""
        result = self.evaluation.evaluate(loss, self.clock.train_seconds, self.part_sizes, exact)
        if self.cpu_seconds is not None:
            result.update(self.cpu_seconds.metrics(self))
        for metric in self.extra_metrics:
            result.update(metric(self))
        return result

    def finish(self, result: dict) -> dict | None:
        """The end: the last evaluation (if the loop made none: resumed at the last step), the
        reconstruction, the final checkpoint and final.json. Collective."""
        self.clock.close_block()
        if not result:
            result = self.evaluate(torch.zeros((), device=self.rt.device))
        extra = {}
        if self.export:
            extra = write_reconstruction(
                self.model,
                self.shard,
                self.array,
                self.rows,
                self.comm,
                self.plan.run_dir,
                self.evaluation.pass_size,
            )
        self.checkpoints.save(self.steps_done, self.state, result)
        return self.reporting.final(self.steps_done, result, self.clock, self.evaluation.seconds, extra)

    # ------------------------------------------------------------------ helpers

    def local_pass(
        self, part: torch.Tensor, residuals: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One worker's training pass on its own rows (``part`` of global indices, one worker):
        targets gathered on the device, then the update's accumulate. What the CUDA graph of
        the fast step captures. Returns the loss and, if asked, each sample's residual (for
        a sampler that observes them, and the emphasis)."""
        stored = self.shard.values[part - self.shard.start]
        errors: list[torch.Tensor] | None = [] if residuals else None
        loss = self.update.accumulate(part, stored, None, part.numel(), errors)
        return loss, (torch.cat(errors) if errors else None)

    def _first_batch(self) -> torch.Tensor:
        """Coordinates of the first step's size on this worker (to compile the graph on)."""
        k = num_selected(self.cfg.sampler.ratio, self.spec.num_points)
        lo, hi = balanced_bounds(k, self.rt.world_size, self.rt.rank)
        return self.shard.coords(0, min(hi - lo, self.shard.size))

    def state(self) -> dict:
        """Everything a resumed run needs to continue exactly as an uninterrupted one. Sampler
        state is global (the same on every worker), so worker 0's copy is the run's."""
        return {
            "step": self.steps_done,
            "part_sizes": self.part_sizes,
            **self.clock.state_dict(),
            **self.update.state_dict(),
            "sampler": self.sampler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "config": self.cfg.to_dict(),
        }

    def restore(self, state: dict) -> None:
        self.update.load_state_dict(state)
        self.sampler.load_state_dict(state["sampler"])
        torch.set_rng_state(state["torch_rng"].cpu())
        self.steps_done = int(state["step"])
        self.part_sizes = int(state.get("part_sizes", 0))
        self.clock.load_state_dict(state)

    @classmethod
    def in_process(cls, cfg: Config, device: str | torch.device = "auto", **options) -> "Loop":
        """A one-worker loop in this process on the store at ``data.path``, writing into
        ``run.dir`` (which must exist): for benchmarks and tests. ``options`` as for ``Loop``."""
        from nint_dist.devices import resolve_device
        from nint_dist.worker import Runtime

        device = resolve_device(device)
        _, spec = open_signal(cfg.data.path)
        plan = RunPlan.split(
            spec,
            run_dir=str(Path(cfg.run.dir).resolve()),
            signal=cfg.data.path,
            source=cfg.data.path,
            workers=1,
            backend="local",
            device=device.type,
        )
        return cls(cfg, plan, Runtime(0, 1, device), **options)
