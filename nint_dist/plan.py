"""The run plan: what the driver settles once, before any worker starts, and hands to every
worker unchanged beside the user's config (which is never edited in flight).

The config says what the user asked for (``data.path=photo.jpg``, ``train.workers=null``); the
plan says what that resolved to on this machine or cluster: the signal store the workers read,
the rows each worker owns, the device, the run directory and where a resumed run continues.
"""

import json
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import yaml

from nint_dist.config import RENAMED, Config, load_config, to_yaml
from nint_dist.errors import UserError
from nint_dist.signal import SignalSpec, shard_rows


@dataclass(frozen=True)
class RunPlan:
    run_dir: str
    """Absolute path of the run directory (on storage every node reaches, on a cluster)."""
    signal: str
    """The zarr store the workers read: the user's store (absolute path or URL), or the copy
    ingested into RUN_DIR/signal.zarr."""
    source: str
    """The input the run was started from (absolute path or URL): a resumed run must name it."""
    workers: int
    backend: str
    """local (the calling process) or ray (Ray Train workers)."""
    device: str
    """cuda or cpu: what every worker trains on."""
    rows: tuple[tuple[int, int], ...]
    """[start, stop) rows of the signal's first axis owned by each worker (whole chunk rows)."""
    resume_step: int = 0
    """The step the run continues from (0: a fresh run). A worker group that Ray Train restarts
    during the run continues from the newest checkpoint instead."""

    @classmethod
    def split(cls, spec: SignalSpec, **fields) -> "RunPlan":
        """A plan whose rows split ``spec`` over ``fields['workers']`` workers (``UserError`` when
        the signal has too few chunk rows for them)."""
        workers = fields["workers"]
        return cls(rows=tuple(shard_rows(spec, workers, r) for r in range(workers)), **fields)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "RunPlan":
        return cls(**{**values, "rows": tuple(tuple(r) for r in values["rows"])})


CONFIG_FILE = "config.yaml"
"""RUN_DIR/config.yaml: the user's config as given (YAML file + overrides), never resolved."""
PLAN_FILE = "plan.json"
"""RUN_DIR/plan.json: the plan the run was launched with."""


def write_run_files(run_dir: Path, cfg: Config, plan: RunPlan) -> None:
    """The config and the plan into the run directory. The plan goes first: a run directory
    with a config.yaml always has its plan.json (the previous version aside)."""
    (run_dir / PLAN_FILE).write_text(json.dumps(plan.to_dict(), indent=1) + "\n")
    (run_dir / CONFIG_FILE).write_text(to_yaml(cfg))


def read_run_files(run_dir: str | Path, overrides: list[str] = ()) -> tuple[Config, RunPlan]:
    """A run directory's config (with ``overrides`` on top) and its plan, read once.

    A run directory of the previous version holds a config.yaml with ``data.source`` (the input
    the run was started from; its ``data.path`` then names the signal store) and no plan.json: its
    plan is rebuilt from that config, so such runs resume and render too. ``UserError`` when
    ``run_dir`` is not a run directory."""
    run_dir = Path(run_dir)
    config = run_dir / CONFIG_FILE
    if not config.is_file():
        raise UserError(f"{run_dir} is not a run directory (no {CONFIG_FILE})")
    if (run_dir / PLAN_FILE).is_file():
        cfg = load_config(config, list(overrides))
        try:
            plan = RunPlan.from_dict(json.loads((run_dir / PLAN_FILE).read_text()))
        except (ValueError, TypeError, KeyError) as e:
            raise UserError(f"{run_dir / PLAN_FILE} is not a run plan ({e})") from None
        return cfg, moved_to(plan, run_dir)
    return _read_previous_version(run_dir, list(overrides))


def moved_to(plan: RunPlan, run_dir: Path) -> RunPlan:
    """The plan of a run directory that was moved or copied (e.g. from a cluster's storage to a
    laptop) since: its run_dir, and a signal ingested into it, as they are now."""
    here = run_dir.resolve()
    if Path(plan.run_dir) == here:
        return plan
    signal = plan.signal
    if "://" not in signal and Path(signal).is_relative_to(plan.run_dir):
        signal = str(here / Path(signal).relative_to(plan.run_dir))
    return replace(plan, run_dir=str(here), signal=signal)


def _read_previous_version(run_dir: Path, overrides: list[str]) -> tuple[Config, RunPlan]:
    values = yaml.safe_load((run_dir / CONFIG_FILE).read_text()) or {}
    source = (values.get("data") or {}).pop("source", None) if isinstance(values, dict) else None
    if not source:
        raise UserError(
            f"{run_dir} holds a {CONFIG_FILE} but no {PLAN_FILE}: the run directory is incomplete"
            " (its launch stopped before the run started); choose another run.dir"
        )
    with tempfile.TemporaryDirectory(prefix="nint-run-") as folder:
        stripped = Path(folder) / CONFIG_FILE
        stripped.write_text(yaml.safe_dump(spelled_now(values)))
        cfg = load_config(stripped, overrides)
    plan = RunPlan(  # what that version resolved into its config (the overrides aside)
        run_dir=str(Path(values["run"]["dir"]).resolve()),
        signal=values["data"]["path"],
        source=source,
        workers=int(values["train"].get("workers") or 1),
        backend=values["run"].get("backend", "ray"),
        device="cpu",  # not recorded by that version
        rows=(),
    )
    return cfg, moved_to(plan, run_dir)


def spelled_now(values: dict) -> dict:
    """A config of an earlier version (nested dict) with its keys in their spelling now
    (``config.RENAMED``; an old key that set two samplers' option sets both), values kept."""
    for old, targets in RENAMED.items():
        section, _, key = old.partition(".")
        if not isinstance(values.get(section), dict) or key not in values[section]:
            continue
        value = values[section].pop(key)
        for target in targets:
            *parents, leaf = target.split(".")
            node = values
            for name in parents:
                node = node.setdefault(name, {})
            node[leaf] = value
    return values
