"""When and where a run's state is saved, and where a started worker resumes from.

Checkpoints are due every ``train.checkpoint_every`` steps and every
``train.checkpoint_every_s`` seconds, and when the driver asks the run to stop (the stop file
it writes on SIGINT/SIGTERM). Two backends: the local one writes the folder in place; under
Ray Train worker 0 writes it to a temporary folder and every worker reports it, Ray copying it
into RUN_DIR/checkpoints. What a checkpoint holds is the ``Loop``'s ``state()``.
"""

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from nint_dist import checkpoint
from nint_dist.comm import Comm
from nint_dist.config import TrainConfig
from nint_dist.runlog import STOP_FILE


class Checkpoints:
    """The checkpoint cadence, the stop request and saving, for one worker."""

    def __init__(
        self,
        run_dir: str,
        train: TrainConfig,
        comm: Comm,
        report: Callable[[Path | None, str, dict], None] | None = None,
    ):
        self.run_dir, self.train, self.comm, self.report = Path(run_dir), train, comm, report
        self.last = time.monotonic()
        """Wall clock of the last checkpoint (or of the start): the time cadence counts from it."""

    def resume_state(self, device: torch.device) -> dict | None:
        """The state of the newest intact checkpoint in the run directory (None: a fresh start;
        ``RunFailed`` when every checkpoint there is damaged). Read at every start, so a worker
        group restarted by Ray Train continues from the checkpoints its predecessors saved."""
        found = checkpoint.intact_or_none(self.run_dir)
        return None if found is None else checkpoint.load(found, device)

    def start_cadence(self) -> None:
        """The time cadence counts from now (the start, once a resumed state is loaded)."""
        self.last = time.monotonic()

    def requested(self, step: int, finished: bool, log_step: bool) -> tuple[bool, bool]:
        """(a checkpoint is due after ``step``, the driver asked the run to stop). The same
        answer on every worker: with several the time cadence and the stop request are agreed
        on at log steps only (one small all-reduce), with one worker they are looked at every
        step. Nothing is due at the last step (the end saves its own)."""
        if finished:
            return False, False
        timed, stop = False, False
        if self.comm.world_size == 1 or log_step:
            every_s = self.train.checkpoint_every_s
            due = bool(every_s) and time.monotonic() - self.last >= every_s
            asked = (self.run_dir / STOP_FILE).exists()
            flags = self.comm.all_reduce_max(2.0 * asked + due)
            timed, stop = flags >= 1.0, flags >= 2.0
        every = self.train.checkpoint_every
        return timed or stop or bool(every and step % every == 0), stop

    def save(self, step: int, state: Callable[[], dict], metrics: dict) -> None:
        """Worker 0 writes ``state()``; under Ray Train it is reported (every worker reports, as
        Ray requires) and Ray copies it into the run directory. Collective under Ray."""
        self.last = time.monotonic()
        rank0 = self.comm.rank == 0
        if self.report is None:
            if rank0:
                checkpoint.save_local(self.run_dir, step, state())
                checkpoint.prune(self.run_dir, self.train.keep_checkpoints)
            return
        folder = None
        if rank0:
            folder = Path(tempfile.mkdtemp(prefix="nint-ckpt-"))
            checkpoint.write_state(state(), folder)
        try:
            reported = {"step": step, **{k: v for k, v in metrics.items() if "/" not in k}}
            self.report(folder, checkpoint.step_name(step), reported)
        finally:
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)

    @property
    def folder(self) -> Path:
        return self.run_dir / checkpoint.FOLDER
