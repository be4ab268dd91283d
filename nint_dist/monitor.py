"""What worker 0 shows in TensorBoard besides scalars: a reconstruction preview (an image, or
for audio the first seconds as sound), a heat map of where the selection fell since the last
log, and histograms of the sampler's scores.

The preview evaluates the INR itself on a strided grid (at most ``max_side`` pixels on the long
side) — the parameters are the same on every worker, so no data moves. Its PSNR/SSIM against
the stored signal on the same grid points are exact for images up to ``max_side`` pixels and a
subsampled estimate above.
"""

import math

import numpy as np
import torch
from torch import nn

from nint_dist.metrics import ssim
from nint_dist.scoring import predict
from nint_dist.signal import SignalSpec, flat_to_coords, unit_values

SSIM_WINDOW = 11
"""Side of SSIM's Gaussian window (metrics.ssim's default radius 5)."""


class ImageMonitor:
    """Preview and selection heat map of a 2-D signal. Worker 0 only; no collectives."""

    def __init__(
        self,
        array,
        spec: SignalSpec,
        device: torch.device,
        dtype: torch.dtype,
        pass_size: int,
        max_side: int = 1024,
    ):
        self.spec, self.device, self.dtype, self.pass_size = spec, device, dtype, pass_size
        height, width = spec.grid
        self.stride = max(1, math.ceil(max(height, width) / max_side))
        rows = torch.arange(0, height, self.stride)
        cols = torch.arange(0, width, self.stride)
        self.shape = (rows.numel(), cols.numel())
        self.flat = (rows[:, None] * width + cols[None, :]).reshape(-1).to(device)
        self.target = unit_values(array[:: self.stride, :: self.stride], spec)
        self.heat = torch.zeros(self.shape[0] * self.shape[1], dtype=torch.float64, device=device)
        """Selection counts per preview cell, kept on the device: no copy per step."""

    def add_selection(self, indices: torch.Tensor) -> None:
        width = self.spec.grid[1]
        idx = indices.to(self.heat.device)
        cell = (idx // width // self.stride) * self.shape[1] + (idx % width) // self.stride
        self.heat.index_add_(0, cell, torch.ones_like(cell, dtype=self.heat.dtype))  # no host sync

    def preview(self, model: nn.Module) -> np.ndarray:
        coords = lambda lo, hi: flat_to_coords(self.flat[lo:hi], self.spec, self.dtype)  # noqa: E731
        values = predict(model, coords, self.flat.numel(), self.pass_size).double().clamp(0, 1).cpu().numpy()
        return values.reshape(*self.shape, self.spec.channels)

    def log(self, writer, step: int, model: nn.Module) -> dict[str, float]:
        """Write the preview and the heat map (then reset it); return the preview's SSIM."""
        image = self.preview(model)
        writer.add_image("eval/reconstruction", _to_rgb(image), step, dataformats="HWC")
        heat = self.heat.reshape(self.shape).cpu().numpy()
        heat = heat / heat.max() if heat.max() > 0 else heat
        writer.add_image("sampler/selection_heatmap", heat[None].astype(np.float32), step, dataformats="CHW")
        self.heat.zero_()
        if min(self.shape) < SSIM_WINDOW:  # SSIM's window does not fit: no value rather than a wrong one
            return {}
        return {"ssim": ssim(image, self.target)}


class AudioMonitor:
    """The first ``max_seconds`` of an audio signal as fitted so far, playable in TensorBoard's
    Audio tab (the source's clip once, beside it). Worker 0 only; no collectives."""

    def __init__(
        self,
        array,
        spec: SignalSpec,
        device: torch.device,
        dtype: torch.dtype,
        pass_size: int,
        max_seconds: float = 5.0,
    ):
        self.spec, self.dtype, self.pass_size = spec, dtype, pass_size
        self.rate = int(spec.extra.get("sample_rate", 44100))
        self.length = min(spec.grid[0], int(max_seconds * self.rate))
        self.flat = torch.arange(self.length, device=device)
        self.pcm = np.issubdtype(np.dtype(array.dtype), np.integer)
        self.source = self._playable(unit_values(array[: self.length], spec))
        self.source_logged = False

    def _playable(self, unit: np.ndarray) -> np.ndarray:
        """Values in [0, 1] (training's unit range) → mono samples in [-1, 1], shape [1, L]:
        PCM full scale onto [-1, 1], float audio back to its own values."""
        lo, hi = self.spec.value_range
        values = unit * 2.0 - 1.0 if self.pcm else lo + unit * (hi - lo)
        return np.clip(values.reshape(self.length, -1).mean(axis=1), -1.0, 1.0)[None].astype(np.float32)

    def log(self, writer, step: int, model: nn.Module) -> dict[str, float]:
        coords = lambda lo, hi: flat_to_coords(self.flat[lo:hi], self.spec, self.dtype)  # noqa: E731
        unit = predict(model, coords, self.length, self.pass_size).double().cpu().numpy()
        writer.add_audio("eval/reconstruction_audio", self._playable(unit), step, sample_rate=self.rate)
        if not self.source_logged:
            writer.add_audio("eval/source_audio", self.source, step, sample_rate=self.rate)
            self.source_logged = True
        return {}

    def add_selection(self, indices: torch.Tensor) -> None:
        """Nothing to show for audio (the interface ImageMonitor has)."""


def _to_rgb(image: np.ndarray) -> np.ndarray:
    channels = image.shape[-1]
    if channels == 1:
        return np.repeat(image, 3, axis=-1).astype(np.float32)
    return image[..., :3].astype(np.float32)


def log_histograms(writer, step: int, scores: dict[str, torch.Tensor]) -> None:
    for name, values in scores.items():
        finite = values[torch.isfinite(values)]
        if finite.numel():
            writer.add_histogram(f"sampler/scores/{name}", finite.float().cpu().numpy(), step)
