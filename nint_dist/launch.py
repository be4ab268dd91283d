"""``python -m nint_dist.launch CONFIG [key=value …]``: validate, prepare the run directory,
then fit with Ray Train's TorchTrainer (or in this process with ``run.backend=local``).

With no ``RAY_ADDRESS`` a local Ray instance is started; under
``ray job submit -- python -m nint_dist.launch …`` the job's cluster is used unchanged.
"""

import argparse
import json
import logging
import os
import shutil
import socket
import sys
import threading
from pathlib import Path

from nint_dist.checkpoint import FOLDER as CHECKPOINT_FOLDER
from nint_dist.config import Config, load_config, to_yaml
from nint_dist.errors import UserError, run_cli
from nint_dist.ingest import load_source, write_signal
from nint_dist.signal import open_signal, shard_rows


def resolve_signal(cfg: Config):
    """Check the data before anything is written. Returns (in-memory array or None, spec).

    A store URL (``s3://…``, ``gs://…``, ``file://…``) is opened by zarr through fsspec, so a
    cluster's nodes can read one signal from an object store instead of a shared filesystem.
    """
    if is_store_url(cfg.data.path):
        try:
            _, spec = open_signal(cfg.data.path)
        except (OSError, KeyError, ValueError, ImportError) as e:
            raise UserError(
                f"data.path {cfg.data.path} is not a readable signal store ({str(e).splitlines()[0]})"
            ) from None
        return None, spec
    path = Path(cfg.data.path)
    if path.suffix == ".zarr" or path.is_dir():
        if not path.exists():
            raise UserError(f"data.path not found: {path}")
        try:
            _, spec = open_signal(path)
        except (OSError, KeyError, ValueError) as e:
            raise UserError(
                f"data.path {path} is not a readable signal store ({str(e).splitlines()[0]})"
            ) from None
        return None, spec
    array, spec = load_source(path, resolution=cfg.data.resolution, workers=cfg.train.workers or 1)
    return array, spec


def is_store_url(path: str) -> bool:
    return "://" in path


# What a resumed run may change: how long it runs, where and how it is watched. Anything else
# (the input, the model, the sampler, the seed, precision, learning rate) makes a different run.
RESUMABLE_CHANGES = (
    "train.steps",
    "train.max_seconds",
    "train.workers",
    "train.device",
    "train.checkpoint_every",
    "train.collective_timeout_s",
    "train.compile",
    "log.",
    "run.",
    "data.path",
)


def _flatten(values: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def prepare_resume(cfg: Config, run_dir: Path) -> int:
    """Check that ``cfg`` continues the run in ``run_dir`` and point it at that run's signal.
    Returns the step of the checkpoint it resumes from."""
    from nint_dist import checkpoint

    previous = load_config(run_dir / "config.yaml", [])
    before, now = _flatten(previous.to_dict()), _flatten(cfg.to_dict())
    for key in sorted(before):
        if before[key] != now.get(key) and not key.startswith(RESUMABLE_CHANGES):
            raise UserError(
                f"run directory {run_dir} holds a run with {key}={before[key]!r}, not {now.get(key)!r}:"
                " resume it with the same settings or choose another run.dir"
            )
    latest = checkpoint.latest(run_dir)
    if latest is None:
        raise UserError(
            f"run directory {run_dir} holds a run without a checkpoint to resume; choose another run.dir"
        )
    step = int(checkpoint.load(latest)["step"])
    _, spec = open_signal(previous.data.path)
    shard_rows(spec, cfg.train.workers, 0)
    cfg.data.path = previous.data.path
    (run_dir / "final.json").unlink(missing_ok=True)
    return step


def check_run_dir_free(run_dir: Path) -> None:
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        raise UserError(f"run directory {run_dir} already holds files; choose another run.dir")


def prepare_run_dir(cfg: Config) -> Path:
    run_dir = Path(cfg.run.dir)
    check_run_dir_free(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create run directory {run_dir}: {e.strerror}") from None
    return run_dir


def launch(config_path: str | None, overrides: list[str], verbose: bool = False) -> int:
    print_summary(fit(config_path, overrides, verbose))
    return 0


def fit(config_path: str | None, overrides: list[str], verbose: bool = False) -> Path:
    """Validate, prepare the run directory and train; returns the run directory."""
    cfg = load_config(config_path, overrides)
    cfg.data.source = cfg.data.path if is_store_url(cfg.data.path) else str(Path(cfg.data.path).resolve())
    place(cfg, verbose)
    run_dir = Path(cfg.run.dir)
    if (run_dir / "config.yaml").exists():
        use_gpu = prepare_backend(cfg, verbose)
        resume_step = prepare_resume(cfg, run_dir)
        print(f"resuming {run_dir} from step {resume_step}", file=sys.stderr)
    else:
        array, spec = resolve_signal(cfg)
        shard_rows(spec, cfg.train.workers, 0)  # raises if the signal cannot be split this way
        check_run_dir_free(run_dir)
        use_gpu = prepare_backend(cfg, verbose)
        run_dir = prepare_run_dir(cfg)
        if array is not None:
            try:
                write_signal(array, spec, run_dir / "signal.zarr")
            except BaseException:  # bad data found while ingesting: leave no run directory behind
                shutil.rmtree(run_dir, ignore_errors=True)
                raise
            cfg.data.path = str((run_dir / "signal.zarr").resolve())
        elif not is_store_url(cfg.data.path):
            cfg.data.path = str(Path(cfg.data.path).resolve())
    cfg.run.dir = str(run_dir.resolve())
    (run_dir / "config.yaml").write_text(to_yaml(cfg))

    where = f"{device_of(cfg, use_gpu)} x {cfg.train.workers} worker(s)"
    with Progress(run_dir, cfg.train.steps, enabled=cfg.log.progress, desc=where):
        if cfg.run.backend == "local":
            run_local(cfg)
        else:
            run_on_ray(cfg, use_gpu)
    return run_dir.resolve()


def run_local(cfg: Config) -> None:
    import torch

    from nint_dist.worker import Runtime, run

    device = torch.device("cuda" if cfg.train.device != "cpu" and torch.cuda.is_available() else "cpu")
    run(cfg, Runtime(0, 1, device))


def visible_gpus(cfg: Config, verbose: bool = False) -> int:
    """GPUs the workers could use: the Ray cluster's under ``RAY_ADDRESS`` (joined here), else
    this machine's."""
    if os.environ.get("RAY_ADDRESS") and cfg.run.backend != "local":
        import ray

        join_ray(os.environ["RAY_ADDRESS"], verbose)
        return int(ray.cluster_resources().get("GPU", 0))
    import torch

    return torch.cuda.device_count()


def place(cfg: Config, verbose: bool = False) -> None:
    """Fill in ``train.workers`` (one per visible GPU, at least 1) and ``run.backend`` (local for
    one worker without ``RAY_ADDRESS``, else ray), and refuse GPU requests the machine cannot
    meet, before anything is written. A cluster under ``RAY_ADDRESS`` may autoscale, so its
    current GPU count only sets the default."""
    address = os.environ.get("RAY_ADDRESS")
    gpus = 0 if cfg.train.device == "cpu" else visible_gpus(cfg, verbose)
    if cfg.train.workers is None:
        cfg.train.workers = max(1, gpus)
    workers = cfg.train.workers
    if cfg.run.backend == "auto":
        cfg.run.backend = "local" if workers == 1 and not address else "ray"
    if cfg.run.backend == "local" and workers != 1:
        raise UserError("run.backend=local runs one worker; set train.workers=1 or run.backend=ray")
    if address and cfg.run.backend == "ray":
        return
    if cfg.train.device == "cuda" and gpus == 0:
        raise UserError("train.device=cuda but no GPU is visible; use train.device=cpu or auto")
    if 0 < gpus < workers:
        raise UserError(
            f"train.workers={workers} asks for {workers} GPU workers but {gpus} GPU(s) are visible;"
            f" use train.workers={gpus}, or train.device=cpu to train on CPU cores"
        )


def device_of(cfg: Config, use_gpu: bool) -> str:
    """What the run trains on, in words (for the plan and the summary)."""
    if not use_gpu:
        return "cpu"
    if cfg.run.backend == "local" or not os.environ.get("RAY_ADDRESS"):
        import torch

        return f"cuda ({torch.cuda.get_device_name(0)})"
    return "cuda"


def prepare_backend(cfg: Config, verbose: bool) -> bool:
    """Make sure the workers can run, before anything is written. Returns whether they get GPUs."""
    if cfg.run.backend == "ray":
        return connect_ray(cfg, verbose)
    import torch

    if cfg.train.device == "cuda" and not torch.cuda.is_available():
        raise UserError("train.device=cuda but no GPU is visible; use train.device=cpu or auto")
    return cfg.train.device != "cpu" and torch.cuda.is_available()


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


def connect_ray(cfg: Config, verbose: bool) -> bool:
    """Start or join Ray and check it can hold the workers, before anything is written.
    Returns whether the workers get GPUs."""
    import ray

    workers = cfg.train.workers
    address = os.environ.get("RAY_ADDRESS")
    join_ray(address, verbose, workers)
    gpus = ray.cluster_resources().get("GPU", 0)
    use_gpu = cfg.train.device == "cuda" or (cfg.train.device == "auto" and gpus > 0)
    # A running cluster may autoscale: its GPU nodes join once Ray Train asks for them.
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


def run_on_ray(cfg: Config, use_gpu: bool) -> None:
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from nint_dist.worker import train_worker

    workers = cfg.train.workers
    trainer = TorchTrainer(
        train_worker,
        train_loop_config=cfg.to_dict(),
        scaling_config=ScalingConfig(
            num_workers=workers, use_gpu=use_gpu, resources_per_worker=None if use_gpu else {"CPU": 1}
        ),
        torch_config=TorchConfig(
            backend="nccl" if use_gpu else "gloo", timeout_s=int(cfg.train.collective_timeout_s)
        ),
        run_config=RunConfig(
            name=CHECKPOINT_FOLDER,  # Ray Train copies reported checkpoints into RUN_DIR/checkpoints
            storage_path=cfg.run.dir,
            failure_config=FailureConfig(max_failures=cfg.train.max_failures),
        ),
    )
    try:
        trainer.fit()
    except Exception as e:  # Ray wraps the worker's exception; show the root cause in one line
        raise RuntimeError(f"training failed: {_root_cause(e)}") from e


def _root_cause(e: BaseException) -> str:
    while e.__cause__ is not None:
        e = e.__cause__
    text = str(e).strip().splitlines()
    return text[-1] if text else type(e).__name__


class Progress:
    """A progress bar on the driver, fed by the metrics.jsonl that worker 0 appends to."""

    def __init__(self, run_dir: Path, total_steps: int, enabled: bool = True, desc: str | None = None):
        self.desc = desc  # where the run trains: device and workers
        self.path = run_dir / "metrics.jsonl"
        self.total = total_steps
        self.enabled = enabled
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True)

    def __enter__(self):
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self.enabled:
            self._thread.join(timeout=5)

    def _follow(self) -> None:
        from tqdm import tqdm

        bar = tqdm(total=self.total, unit="step", dynamic_ncols=True, file=sys.stderr, desc=self.desc)
        offset = 0
        while True:
            stopping = self._stop.wait(0.5)
            if self.path.exists():
                with open(self.path) as f:
                    f.seek(offset)
                    for line in f.readlines():
                        if not line.endswith("\n"):
                            break
                        offset += len(line)
                        row = json.loads(line)
                        bar.update(row["step"] - bar.n)
                        bar.set_postfix(
                            psnr=f"{row['psnr']:.2f}", samples_per_s=f"{row.get('samples_per_s', 0):.3g}"
                        )
            if stopping:
                break
        bar.close()


def print_summary(run_dir: Path) -> None:
    """One screen: the final metrics, the time, and where everything is."""
    final = json.loads((run_dir / "final.json").read_text())
    metrics = "  ".join(
        f"{key} {final[key]:.4g}" for key in ("psnr", "ssim", "si_snr", "iou", "chamfer") if key in final
    )
    device = final.get("device_name") or final.get("device", "")
    lines = [
        f"done: {final['steps']} steps on {final['workers']} worker(s) ({device}),"
        f" {final['train_seconds']:.1f} s of training ({final['ms_per_step']:.1f} ms/step),"
        f" sampler {final['sampler']}",
        f"final:           {metrics}",
        f"run directory:   {run_dir}",
    ]
    for name in ("reconstruction.png", "reconstruction.wav", "reconstruction.obj", "reconstruction.zarr"):
        if (run_dir / name).exists():
            lines.append(f"reconstruction:  {run_dir / name}")
            break
    lines.append(f"metrics:         {run_dir / 'metrics.jsonl'}  (summary: final.json)")
    lines.append(f"checkpoints:     {run_dir / 'checkpoints'}  (launch again with this run.dir to resume)")
    if (run_dir / "tensorboard").exists():
        # the environment's own tensorboard when it is not on PATH (a venv that is not activated)
        tensorboard = shutil.which("tensorboard") or Path(sys.executable).parent / "tensorboard"
        lines.append(f"TensorBoard:     {tensorboard} --logdir {run_dir / 'tensorboard'}")
    print("\n".join(lines))


def main(argv: list[str] | None = None, prog: str = "python -m nint_dist.launch") -> int:
    from nint_dist import __version__, cli

    parser = argparse.ArgumentParser(
        prog=prog,
        description="Fit an INR: validate the config, prepare the run directory, then train with Ray Train"
        " workers (or in this process with one worker).",
        epilog=cli.OVERRIDE_HELP + " Resume a run by launching again with its run.dir.",
    )
    parser.add_argument("config", nargs="?", help="YAML config file (e.g. configs/quickstart.yaml)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.steps=500")
    parser.add_argument("-v", "--verbose", action="store_true", help="show Ray's own logs")
    parser.add_argument(
        "--help-config",
        nargs="?",
        const="",
        metavar="PREFIX",
        help="list every config key (or those under PREFIX, e.g. train) with type, default and meaning",
    )
    parser.add_argument(
        "--print-config", action="store_true", help="print the resolved config and exit without running"
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="check everything and print the plan (signal, shards per worker, device, memory); write nothing",
    )
    parser.add_argument("--version", action="version", version=f"nint_dist {__version__}")
    args = parser.parse_args(argv)
    if args.help_config is not None:
        return run_cli(lambda: print(cli.help_config(args.help_config)) or 0)
    if args.config is None:
        parser.error("the config file is required (e.g. configs/quickstart.yaml)")
    if "=" in args.config:  # overrides only: no config file
        args.overrides, args.config = [args.config, *args.overrides], None
    if args.print_config:
        return run_cli(lambda: print(cli.print_config(args.config, args.overrides)) or 0)
    if args.dry_run:
        return run_cli(lambda: print(cli.plan(args.config, args.overrides)) or 0)
    return run_cli(lambda: launch(args.config, args.overrides, args.verbose))


if __name__ == "__main__":
    sys.exit(main())
