"""Files made from a finished reconstruction, by modality: a PNG for images. Runs on worker 0
after every worker has written its rows of ``reconstruction.zarr``; no collectives here."""

from pathlib import Path

import numpy as np

from nint_dist.signal import SignalSpec


def export_reconstruction(spec: SignalSpec, recon_path: Path, run_dir: Path) -> dict[str, float]:
    """Write the modality's viewable file(s) from ``reconstruction.zarr``; return any extra final
    metrics the modality defines (none for images: PSNR comes from training's evaluation)."""
    import zarr

    if spec.kind == "image":
        from PIL import Image

        image = np.asarray(zarr.open_array(str(recon_path), mode="r")[...])
        if image.dtype != np.uint8:
            image = (image.astype(np.float64) / spec.value_range[1] * 255).round().astype(np.uint8)
        Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(run_dir / "reconstruction.png")
    return {}
