"""Ray's side of a launch: joining or starting the cluster and checking it can hold the workers
(before anything is written), running the Ray Train worker group, and turning its failure into
one line that names a worker that hung."""

import json
import logging
import os
import socket
import sys
from pathlib import Path

from nint_dist.checkpoint import FOLDER as CHECKPOINT_FOLDER
from nint_dist.config import Config
from nint_dist.errors import RunFailed, UserError
from nint_dist.plan import RunPlan


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast on a Ray address nothing listens at (ray.init would retry for minutes)."""
    hostport = address.split("://", 1)[-1].rstrip("/")
    if address == "auto" or ":" not in hostport:
        return
    host, _, port = hostport.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except (OSError, ValueError) as e:
        raise UserError(
            f"cannot reach the Ray cluster at {address} ({e.strerror or e}); start it or unset RAY_ADDRESS"
        ) from None


def connect_ray(cfg: Config, workers: int, verbose: bool) -> bool:
    """Start or join Ray and check it can hold ``workers`` workers, before anything is written.
    Returns whether the workers get GPUs."""
    import ray

    address = os.environ.get("RAY_ADDRESS")
    join_ray(address, verbose, workers)
    gpus = ray.cluster_resources().get("GPU", 0)
    use_gpu = cfg.train.device == "cuda" or (cfg.train.device == "auto" and gpus > 0)
    if address:  # a running cluster may autoscale: wait for its nodes, up to a deadline
        wait_for_resources("GPU" if use_gpu else "CPU", workers, cfg.run.wait_for_workers_s, address)
    if use_gpu and gpus < workers and not address:
        raise UserError(f"train.device=cuda needs {workers} GPUs but the Ray cluster has {int(gpus)}")
    cpus = ray.cluster_resources().get("CPU", 0)
    if not use_gpu and cpus < workers and not address:
        raise UserError(
            f"train.workers={workers} needs {workers} CPU slots but the Ray cluster has {int(cpus)};"
            " lower train.workers or add nodes"
        )
    cores = os.cpu_count() or 1
    if not use_gpu and not address and workers > cores:
        print(
            f"warning: train.workers={workers} on {cores} CPU cores: the workers share the cores and"
            " every step waits for the slowest; fewer workers train faster here",
            file=sys.stderr,
        )
    return use_gpu


def wait_for_resources(kind: str, needed: int, deadline_s: float, address: str) -> None:
    """Return once the cluster holds ``needed`` of ``kind`` (GPU or CPU); ``UserError`` after
    ``deadline_s`` seconds without them (``run.wait_for_workers_s``)."""
    import time

    import ray

    start = time.monotonic()
    while (have := ray.cluster_resources().get(kind, 0)) < needed:
        if time.monotonic() - start >= deadline_s:
            raise UserError(
                f"the Ray cluster at {address} has {int(have)} {kind}s and train.workers={needed} needs"
                f" {needed}; none joined within run.wait_for_workers_s={deadline_s:g} s"
            )
        time.sleep(min(2.0, max(deadline_s / 10, 0.1)))


def join_ray(address: str | None, verbose: bool, workers: int = 1) -> None:
    """Connect to the cluster at ``address``, or start a local Ray with a CPU slot per worker."""
    import ray

    if ray.is_initialized():
        return
    if address:
        check_reachable(address)
    extra = {} if address else {"num_cpus": max(os.cpu_count() or 1, workers + 1), "include_dashboard": False}
    try:
        ray.init(
            address=address,
            logging_level=logging.INFO if verbose else logging.ERROR,
            log_to_driver=verbose,
            **extra,
        )
    except ConnectionError as e:
        raise UserError(f"cannot reach the Ray cluster at {address}: {str(e).splitlines()[0]}") from None


def run_on_ray(cfg: Config, plan: RunPlan) -> None:
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from nint_dist.worker import FAILURE, train_worker

    failure = Path(plan.run_dir) / FAILURE
    failure.unlink(missing_ok=True)  # a resumed run's previous failure is not this one's
    use_gpu = plan.device == "cuda"
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={"config": cfg.to_dict(), "plan": plan.to_dict()},
        scaling_config=ScalingConfig(
            num_workers=plan.workers, use_gpu=use_gpu, resources_per_worker=None if use_gpu else {"CPU": 1}
        ),
        torch_config=TorchConfig(
            backend="nccl" if use_gpu else "gloo", timeout_s=int(cfg.train.collective_timeout_s)
        ),
        run_config=RunConfig(
            name=CHECKPOINT_FOLDER,  # Ray Train copies reported checkpoints into RUN_DIR/checkpoints
            storage_path=plan.run_dir,
            failure_config=FailureConfig(max_failures=cfg.train.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.train.keep_checkpoints or None),
        ),
    )
    try:
        trainer.fit()
    except Exception as e:  # Ray wraps the worker's exception; show the root cause in one line
        raise RunFailed(f"training failed: {_root_cause(e)}{_hung_workers(cfg, plan)}") from e
    if failure.exists():  # the workers stopped on purpose; retrying would fail the same way
        raise RunFailed(json.loads(failure.read_text())["error"])


def _hung_workers(cfg: Config, plan: RunPlan) -> str:
    """When some workers saw a collective fail (time out), the ones that did not are the ones that
    never reached it: named from RUN_DIR/workers/rank_R.json. Empty when nothing says so."""
    records = {}
    for rank in range(plan.workers):
        try:
            records[rank] = json.loads((Path(plan.run_dir) / "workers" / f"rank_{rank}.json").read_text())
        except (OSError, ValueError):
            records[rank] = {}
    waited = [r for r, rec in records.items() if rec.get("collective_failed")]
    if not waited:
        return ""
    hung = [
        f"worker {r} (pid {rec.get('pid', '?')} on {rec.get('host', '?')})"
        for r, rec in records.items()
        if r not in waited
    ]
    return (
        f" [{', '.join(hung) or 'no worker'} did not reach the collective that worker"
        f"{'s' * (len(waited) > 1)} {', '.join(map(str, waited))} waited"
        f" train.collective_timeout_s={cfg.train.collective_timeout_s:g} s for]"
    )


def _root_cause(e: BaseException) -> str:
    while e.__cause__ is not None:
        e = e.__cause__
    text = str(e).strip().splitlines()
    return text[-1] if text else type(e).__name__
