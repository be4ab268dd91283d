"""The run plan: what the driver settles once, before any worker starts, and hands to every
worker unchanged beside the user's config (which is never edited in flight).

The config says what the user asked for (``data.path=photo.jpg``, ``train.workers=null``); the
plan says what that resolved to on this machine or cluster: the signal store the workers read,
the rows each worker owns, the device, the run directory and where a resumed run continues.
"""

from dataclasses import asdict, dataclass

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
