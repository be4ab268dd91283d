"""``python -m nint_dist.launch CONFIG [key=value …]``: validate, resolve the run plan, prepare
the run directory, then fit with Ray Train's TorchTrainer (or in this process with
``run.backend=local``). The config is never edited: what it resolves to on this machine (the
signal store, workers, backend, device, rows per worker, resume step) is the plan, written beside
it as ``RUN_DIR/plan.json`` and handed to every worker unchanged.

With no ``RAY_ADDRESS`` a local Ray instance is started; under
``ray job submit -- python -m nint_dist.launch …`` the job's cluster is used unchanged.
"""

import argparse
import dataclasses
import os
import shutil
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np

from nint_dist.cluster import connect_ray, join_ray, run_on_ray
from nint_dist.config import Config, load_config
from nint_dist.console import Progress, StopOnSignal, print_interrupted, print_summary, wait_in_main_thread
from nint_dist.devices import resolve_device
from nint_dist.errors import UserError, run_cli
from nint_dist.ingest import load_source, write_signal
from nint_dist.plan import CONFIG_FILE, RunPlan, read_run_files, write_run_files
from nint_dist.samplers import SAMPLERS, idle_sections
from nint_dist.signal import SignalSpec, open_signal, verifiable_checksums


def resolve_signal(cfg: Config, workers: int = 1) -> tuple[np.ndarray | None, SignalSpec, np.dtype]:
    """Check the data before anything is written. Returns (the signal in memory, still to be
    ingested into the run directory, or None for a signal store; its spec; its stored dtype).

    A store URL (``s3://…``, ``gs://…``, ``file://…``) is opened by zarr through fsspec, so a
    cluster's nodes can read one signal from an object store instead of a shared filesystem.
    """
    if is_store_url(cfg.data.path):
        store, spec = open_store(cfg.data.path)
        return None, spec, np.dtype(store.dtype)
    path = Path(cfg.data.path)
    if path.suffix == ".zarr" or path.is_dir():
        if not path.exists():
            raise UserError(f"data.path not found: {path}")
        store, spec = open_store(path)
        if cfg.data.verify:  # said once here, before anything is written; the workers stay quiet
            verifiable_checksums(store, spec, strict=cfg.data.verify == "strict", warn=True)
        return None, spec, np.dtype(store.dtype)
    array, spec = load_source(path, resolution=cfg.data.resolution, workers=workers)
    return array, spec, np.dtype(array.dtype)


def open_store(path: str | Path):
    """A signal store opened read-only, or one ``UserError`` line saying why it cannot be."""
    try:
        return open_signal(path)
    except (OSError, KeyError, ValueError, ImportError) as e:
        reason = str(e).splitlines()[0]
        raise UserError(f"data.path {path} is not a readable signal store ({reason})") from None


def is_store_url(path: str) -> bool:
    return "://" in path


def source_of(data_path: str) -> str:
    """The input ``data.path`` names, independent of the working directory: a URL as it is, a
    path made absolute."""
    return data_path if is_store_url(data_path) else str(Path(data_path).resolve())


# What a resumed run may change: how long it runs, where and how it is watched. Anything else
# (the input, the model, the sampler, the seed, precision, learning rate) makes a different run.
RESUMABLE_CHANGES = (
    "train.steps",
    "train.max_seconds",
    "train.workers",
    "train.device",
    "train.checkpoint_every",
    "train.checkpoint_every_s",
    "train.keep_checkpoints",
    "train.collective_timeout_s",
    "train.compile",
    "log.",
    "run.",
    "data.path",  # compared as the input it names (see check_continues)
)


def _flatten(values: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_continues(cfg: Config, previous_cfg: Config, previous: RunPlan, run_dir: Path) -> None:
    """``UserError`` unless ``cfg`` continues the run in ``run_dir``: the same settings but for
    RESUMABLE_CHANGES, and the same input. The input is the same when data.path is spelled as
    before (``--resume`` reuses it; a relative path then names the original file, wherever the
    driver runs now) or names the same file or URL as the run's recorded source."""
    before, now = _flatten(previous_cfg.to_dict()), _flatten(cfg.to_dict())
    for key in sorted(before):
        if before[key] != now.get(key) and not key.startswith(RESUMABLE_CHANGES):
            raise UserError(
                f"run directory {run_dir} holds a run with {key}={before[key]!r}, not {now.get(key)!r}:"
                " resume it with the same settings or choose another run.dir"
            )
    if cfg.data.path != previous_cfg.data.path and source_of(cfg.data.path) != previous.source:
        raise UserError(
            f"run directory {run_dir} holds a run on {previous.source}, not {source_of(cfg.data.path)}:"
            " resume it with the same data.path (--resume RUN_DIR needs none) or choose another run.dir"
        )


def resume_step(run_dir: Path) -> int:
    """The step of the newest intact checkpoint, read from its folder's name (0: none yet, the
    run starts over). The state itself is the workers' to load."""
    from nint_dist import checkpoint

    latest = checkpoint.intact_or_none(run_dir)
    return 0 if latest is None else checkpoint.step_of(latest)


def check_run_dir_free(run_dir: Path) -> None:
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        raise UserError(f"run directory {run_dir} already holds files; choose another run.dir")


def prepare_run_dir(run_dir: Path) -> None:
    check_run_dir_free(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create run directory {run_dir}: {e.strerror}") from None


def run_dir_of(text: str, backend: str) -> Path:
    """run.dir as the plan's absolute path: ``file://`` URLs become paths, relative paths are
    taken from the working directory. Under ``RAY_ADDRESS`` the cluster's nodes write the run's
    files: a relative run.dir would land in the job's working directory on whichever node runs
    the driver, where the user never finds it, so it must be absolute (on storage every node and
    the user can reach)."""
    if text.startswith("file://"):
        text = unquote(urlparse(text).path)
    elif "://" in text:
        raise UserError(
            f"run.dir={text}: run directories on object stores are not supported;"
            " use an absolute path on storage every node can reach (data.path may be a store URL)"
        )
    if backend != "local" and os.environ.get("RAY_ADDRESS") and not Path(text).is_absolute():
        raise UserError(
            f"run.dir={text} is relative: on a Ray cluster (RAY_ADDRESS is set) give an absolute"
            " path on storage that every node and you can reach, e.g. run.dir=/shared/runs/NAME"
        )
    return Path(text).resolve()


@dataclasses.dataclass(frozen=True)
class Resolution:
    """What the driver settles before writing anything."""

    plan: RunPlan
    spec: SignalSpec
    dtype: np.dtype
    """The signal's stored dtype."""
    ingest: np.ndarray | None
    """A file input read into memory, to be written to ``plan.signal`` (RUN_DIR/signal.zarr);
    None when the run reads a signal store."""
    resuming: bool
    """The run directory holds a run that this launch continues."""


def resolve(
    cfg: Config, verbose: bool = False, resume_dir: str | Path | None = None, connect: bool = True
) -> Resolution:
    """Resolve ``cfg`` into the run's plan, checking everything that can be checked without
    writing: the run directory, workers and backend, the device (with ``connect``, by starting or
    joining Ray; the dry run asks for the visible GPUs instead), the signal and its split over the
    workers, and for a run directory that holds a run, that this config continues it. The signal
    is opened here once; ``cfg`` is left as it is."""
    if resume_dir is not None:
        run_dir = Path(resume_dir).resolve()
    else:
        run_dir = run_dir_of(cfg.run.dir, cfg.run.backend)
    workers, backend = place(cfg, verbose)
    resuming = (run_dir / CONFIG_FILE).exists()
    if resuming:
        previous_cfg, previous = read_run_files(run_dir)
        check_continues(cfg, previous_cfg, previous, run_dir)
        store, spec = open_store(previous.signal)
        ingest, dtype, signal, source = None, np.dtype(store.dtype), previous.signal, previous.source
        step = resume_step(run_dir)
    else:
        ingest, spec, dtype = resolve_signal(cfg, workers)
        source = source_of(cfg.data.path)
        signal = str(run_dir / "signal.zarr") if ingest is not None else source
        step = 0
    check_sampler_suits(cfg, spec)
    plan = RunPlan.split(  # UserError when the signal has too few chunk rows for the workers
        spec,
        run_dir=str(run_dir),
        signal=signal,
        source=source,
        workers=workers,
        backend=backend,
        device="cpu",  # settled below, once the cheap checks have passed
        resume_step=step,
    )
    if not resuming:
        check_run_dir_free(run_dir)
    device = worker_device(cfg, workers, backend, verbose, connect)
    if cfg.train.precision == "fp16" and device != "cuda":
        raise UserError("train.precision=fp16 needs GPUs; use train.precision=bf16 on CPUs")
    return Resolution(dataclasses.replace(plan, device=device), spec, dtype, ingest, resuming)


def check_sampler_suits(cfg: Config, spec: SignalSpec) -> None:
    """``UserError`` when the sampler cannot work on this signal: one built on image operators
    (``Sampler.needs_image``) and a signal that is not an image. Before anything is written.
    A warning for options given to a sampler the run does not use (``sampler.name=auto`` may
    settle on another than the one they were meant for)."""
    settled = cfg.settled(spec.kind).sampler
    name = settled.name
    if SAMPLERS[name][0].needs_image and len(spec.grid) != 2:
        raise UserError(
            f"sampler.name={name} works on images (2-D grids); this signal's grid is"
            f" {'x'.join(map(str, spec.grid))}: choose another sampler (e.g. nint, uniform, soft)"
        )
    for section in idle_sections(settled):
        chosen = f" (sampler.name=auto on {spec.kind} signals)" if cfg.sampler.name != name else ""
        print(
            f"warning: {section}.* is set but the run uses {name}{chosen}, so it does nothing;"
            f" give sampler.name to use it",
            file=sys.stderr,
        )


def resolve_plan(cfg: Config, verbose: bool = False, resume_dir: str | Path | None = None) -> RunPlan:
    """The plan ``nint fit`` runs ``cfg`` with (see ``resolve``); writes nothing."""
    return resolve(cfg, verbose, resume_dir).plan


def launch(
    config_path: str | None, overrides: list[str], verbose: bool = False, resume: str | None = None
) -> int:
    """Fit and print the summary; with ``resume`` (a run directory) continue it from its own
    saved config, the overrides applied on top. A run stopped by SIGINT/SIGTERM (checkpointed,
    no final.json) prints how to resume it and exits with 130."""
    run_dir = fit(config_path, overrides, verbose, resume)
    if not (run_dir / "final.json").exists():
        print_interrupted(run_dir)
        return 130
    print_summary(run_dir)
    return 0


def fit(
    config_path: str | None, overrides: list[str], verbose: bool = False, resume: str | None = None
) -> Path:
    """Resolve the plan, write the run directory (``config.yaml``: the config as given;
    ``plan.json``: what it resolved to) and train; returns the run directory."""
    if resume is not None:  # the run's own config, the overrides on top
        cfg, _ = read_run_files(resume, overrides)
    else:
        cfg = load_config(config_path, overrides)
    resolution = resolve(cfg, verbose, resume)
    plan = resolution.plan
    run_dir = Path(plan.run_dir)
    if resolution.resuming:
        print(f"resuming {run_dir} from step {plan.resume_step}", file=sys.stderr)
        (run_dir / "final.json").unlink(missing_ok=True)
    else:
        prepare_run_dir(run_dir)
        if resolution.ingest is not None:
            try:
                write_signal(resolution.ingest, resolution.spec, Path(plan.signal))
            except BaseException:  # bad data found while ingesting: leave no run directory behind
                shutil.rmtree(run_dir, ignore_errors=True)
                raise
    write_run_files(run_dir, cfg, plan)

    progress = Progress(
        run_dir,
        cfg.train.steps,
        enabled=cfg.log.progress,
        desc=f"{device_words(plan)} x {plan.workers} worker(s)",
        max_seconds=cfg.train.max_seconds,
    )
    with progress, StopOnSignal(run_dir):
        if plan.backend == "local":
            run_local(cfg, plan)
        else:
            wait_in_main_thread(lambda: run_on_ray(cfg, plan))
    if plan.backend == "ray":  # what Ray Train's num_to_keep did not see: a previous launch's
        from nint_dist import checkpoint

        checkpoint.prune(run_dir, cfg.train.keep_checkpoints)
    return run_dir


def run_local(cfg: Config, plan: RunPlan) -> None:
    import torch

    from nint_dist.worker import Runtime, run

    run(cfg, plan, Runtime(0, 1, torch.device(plan.device)))


def visible_gpus(cfg: Config, verbose: bool = False) -> int:
    """GPUs the workers could use: the Ray cluster's under ``RAY_ADDRESS`` (joined here), else
    this machine's."""
    if os.environ.get("RAY_ADDRESS") and cfg.run.backend != "local":
        import ray

        join_ray(os.environ["RAY_ADDRESS"], verbose)
        return int(ray.cluster_resources().get("GPU", 0))
    import torch

    return torch.cuda.device_count()


def place(cfg: Config, verbose: bool = False) -> tuple[int, str]:
    """The number of workers (``train.workers``, or one per visible GPU, at least 1) and the
    backend (``run.backend``, or for auto: local for one worker without ``RAY_ADDRESS``, else
    ray); GPU requests the machine cannot meet are refused before anything is written. A cluster
    under ``RAY_ADDRESS`` may autoscale, so its current GPU count only sets the default."""
    address = os.environ.get("RAY_ADDRESS")
    gpus = 0 if cfg.train.device == "cpu" else visible_gpus(cfg, verbose)
    workers = cfg.train.workers if cfg.train.workers is not None else max(1, gpus)
    backend = cfg.run.backend
    if backend == "auto":
        backend = "local" if workers == 1 and not address else "ray"
    if backend == "local" and workers != 1:
        raise UserError("run.backend=local runs one worker; set train.workers=1 or run.backend=ray")
    if address and backend == "ray":
        return workers, backend
    if cfg.train.device == "cuda" and gpus == 0:
        raise UserError("train.device=cuda but no GPU is visible; use train.device=cpu or auto")
    if 0 < gpus < workers:
        raise UserError(
            f"train.workers={workers} asks for {workers} GPU workers but {gpus} GPU(s) are visible;"
            f" use train.workers={gpus}, or train.device=cpu to train on CPU cores"
        )
    return workers, backend


def worker_device(cfg: Config, workers: int, backend: str, verbose: bool, connect: bool = True) -> str:
    """cuda or cpu: what the workers train on, checked before anything is written. The local
    backend asks the one device rule; Ray is started or joined (``connect``) to check that it
    can hold the workers; without ``connect`` (the dry run) the visible GPUs decide."""
    if backend == "local":
        return resolve_device(cfg.train.device, "train.device").type
    if connect:
        return "cuda" if connect_ray(cfg, workers, verbose) else "cpu"
    gpus = 0 if cfg.train.device == "cpu" else visible_gpus(cfg, verbose)
    return "cuda" if cfg.train.device == "cuda" or gpus > 0 else "cpu"


def device_words(plan: RunPlan) -> str:
    """What the run trains on, in words (for the dry run and the progress bar)."""
    if plan.device != "cuda":
        return plan.device
    if plan.backend == "local" or not os.environ.get("RAY_ADDRESS"):
        import torch

        return f"cuda ({torch.cuda.get_device_name(0)})"
    return "cuda"


def main(argv: list[str] | None = None, prog: str = "python -m nint_dist.launch") -> int:
    from nint_dist import __version__, cli

    parser = argparse.ArgumentParser(
        prog=prog,
        description="Fit an INR: validate the config, prepare the run directory, then train with Ray Train"
        " workers (or in this process with one worker).",
        epilog=cli.OVERRIDE_HELP
        + " Resume a run with --resume RUN_DIR (or by launching again with its run.dir).",
    )
    parser.add_argument("config", nargs="?", help="YAML config file (e.g. configs/quickstart.yaml)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.steps=500")
    parser.add_argument(
        "--resume", metavar="RUN_DIR", help="continue RUN_DIR with its own saved config (then only overrides)"
    )
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
    if args.resume is not None:  # every positional is an override then
        overrides = [args.config, *args.overrides] if args.config is not None else args.overrides
        return run_cli(lambda: launch(None, overrides, args.verbose, args.resume), args.verbose)
    if args.config is None:
        parser.error("the config file is required (e.g. configs/quickstart.yaml), or --resume RUN_DIR")
    if "=" in args.config:  # overrides only: no config file
        args.overrides, args.config = [args.config, *args.overrides], None
    if args.print_config:
        return run_cli(lambda: print(cli.print_config(args.config, args.overrides)) or 0)
    if args.dry_run:
        return run_cli(lambda: print(cli.plan(args.config, args.overrides)) or 0)
    return run_cli(lambda: launch(args.config, args.overrides, args.verbose), args.verbose)


if __name__ == "__main__":
    sys.exit(main())
