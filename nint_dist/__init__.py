"""nint_dist: exact distributed NTK-guided implicit neural teaching for large signals.

Layers, bottom to top:
- math (no Ray, no torch.distributed): ``scoring``, ``selection``, ``schedules``, ``models``,
  ``samplers``, ``metrics``, ``signal``;
- orchestration: ``comm`` (collectives, identity for one worker), ``shard`` (a worker's view of
  the signal and the selection context), ``worker`` (the per-worker training loop);
- user surface: ``launch``, ``ingest``.
"""

__version__ = "0.1.0"
