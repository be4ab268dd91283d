"""Where a worker process enters training. Ray Train runs ``train_worker`` on every worker of
the group; the local backend calls ``run`` in the calling process with one worker. Both build
the same ``training.Loop`` from the user's config and the driver's run plan, which they never
edit. The loop itself, and everything it calls, lives in ``nint_dist.training``.
"""

import json
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from nint_dist.config import Config, from_dict
from nint_dist.errors import RunFailed
from nint_dist.plan import RunPlan
from nint_dist.training import Loop

FAILURE = "failure.json"
"""RUN_DIR/failure.json: why a run stopped that must not be retried (a diverged model, no intact
checkpoint to resume from). Worker 0 writes it; the driver turns it into one line, exit 1."""


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
    """This Ray Train worker's rank, device and checkpoint reporting."""
    import ray.train
    import ray.train.torch

    def report(folder: Path | None, name: str, metrics: dict) -> None:
        checkpoint = None if folder is None else ray.train.Checkpoint.from_directory(str(folder))
        ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=name)

    ctx = ray.train.get_context()
    return Runtime(ctx.get_world_rank(), ctx.get_world_size(), ray.train.torch.get_device(), report)


def train_worker(payload: dict) -> None:
    """Ray Train's ``train_loop_per_worker``, ``payload = {"config": …, "plan": …}`` (both as
    dicts, as Ray ships them). After a restart it resumes from the newest checkpoint. A
    ``RunFailed`` ends the worker normally (every worker meets it at the same point) with the
    reason in ``failure.json``: restarting would only fail the same way again."""
    cfg, plan, rt = from_dict(payload["config"]), RunPlan.from_dict(payload["plan"]), ray_runtime()
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
    """Fit the signal of ``plan`` on this worker; returns the summary on worker 0, None elsewhere."""
    record_process(plan.run_dir, rt.rank)
    return Loop(cfg, plan, rt).run()
