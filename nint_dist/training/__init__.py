"""One worker's training, as a loop and the components it calls (see ``loop``):

- ``loop``: ``Loop``, the steps and the moments around them;
- ``update``: the model wrapper (DDP, compile), Adam, the fp16 scaler, the lr schedule, the
  micro-batched accumulate;
- ``exchange``: the training all-to-all (each worker's part of a selection, its targets);
- ``clock``: training and wall clocks, the time budget, CPU seconds;
- ``evaluation``: PSNR exact or on the fixed subset, memory and load balance, the eval share;
- ``checkpoints``: cadence, stop request, saving (local or Ray), the resume point;
- ``reporting``: metrics rows, TensorBoard, final.json;
- ``export``: reconstruction.zarr and the modality's files;
- ``health``: the non-finite watch.
"""

from nint_dist.training.clock import CpuSeconds
from nint_dist.training.loop import Loop

__all__ = ["CpuSeconds", "Loop"]
