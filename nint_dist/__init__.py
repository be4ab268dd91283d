"""nint_dist: exact distributed NTK-guided implicit neural teaching for large signals.

    import nint_dist
    run = nint_dist.fit(image, train={"steps": 300})   # a NumPy array, a path or a zarr store
    inr = nint_dist.load(run.dir)                       # a callable INR with .render(...)

Layers, bottom to top:
- math (no Ray, no torch.distributed): ``scoring``, ``selection``, ``schedules``, ``models``,
  ``samplers``, ``metrics``, ``signal``;
- orchestration: ``comm`` (collectives, identity for one worker), ``shard`` (a worker's view of
  the signal and the selection context), ``worker`` (the per-worker training loop);
- user surface: ``api`` (``fit``, ``load``), ``cli`` (the ``nint`` command), ``launch``, ``ingest``,
  ``render``.
"""

__version__ = "0.1.0"

__all__ = ["INR", "Run", "__version__", "fit", "load"]


def __getattr__(name: str):
    """``fit``, ``load``, ``Run`` and ``INR`` from ``nint_dist.api``, imported on first use so that
    ``import nint_dist`` (and every command's start) stays light."""
    if name in ("fit", "load", "Run", "INR"):
        from nint_dist import api

        return getattr(api, name)
    raise AttributeError(f"module 'nint_dist' has no attribute {name!r}")
