"""Files made from a finished reconstruction, by modality, and the modality's final metrics:
a PNG for images; a WAV and SI-SNR for audio; a marching-cubes mesh (OBJ), the IoU of the
occupancy and the Chamfer distance of the zero level set for signed-distance volumes. Runs on
worker 0 after every worker has written its rows of ``reconstruction.zarr``; no collectives
here. Volumes are read a block of rows at a time."""

import sys
from pathlib import Path

import numpy as np

from nint_dist.metrics import chamfer_distance, occupancy_counts, si_snr
from nint_dist.signal import SignalSpec

PNG_MAX_PIXELS = 1 << 26
"""Larger images keep only ``reconstruction.zarr`` (a PNG would be decoded whole by viewers)."""
CHAMFER_MAX_POINTS = 200_000
"""Level-set vertices used for the Chamfer distance (a fixed-seed subsample beyond this)."""


def export_reconstruction(spec: SignalSpec, recon_path: Path, run_dir: Path, source=None) -> dict[str, float]:
    """Write the modality's viewable file(s) from ``reconstruction.zarr``; return the extra final
    metrics the modality defines, computed against ``source`` (the signal's zarr array) when given
    (none for images: PSNR comes from training's evaluation)."""
    import zarr

    recon = zarr.open_array(str(recon_path), mode="r")
    if spec.kind == "image":
        export_image(spec, recon, run_dir)
        return {}
    if spec.kind == "audio":
        return export_audio(spec, recon, run_dir, source)
    if spec.kind == "volume":
        return export_volume(spec, recon, run_dir, source)
    return {}


def export_image(spec: SignalSpec, recon, run_dir: Path) -> None:
    from PIL import Image

    if spec.num_points > PNG_MAX_PIXELS:
        print(f"note: no reconstruction.png for {spec.grid} pixels; see reconstruction.zarr", file=sys.stderr)
        return
    image = np.asarray(recon[...])
    if image.dtype != np.uint8:
        image = (image.astype(np.float64) / spec.value_range[1] * 255).round().astype(np.uint8)
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(run_dir / "reconstruction.png")


def export_audio(spec: SignalSpec, recon, run_dir: Path, source) -> dict[str, float]:
    """reconstruction.wav (32-bit float, the source's sample rate) and SI-SNR against the source."""
    from nint_dist.sources.audio import write_wav

    values = np.asarray(recon[...], dtype=np.float64)
    lo, hi = spec.value_range
    if np.issubdtype(recon.dtype, np.integer):  # PCM: full scale onto [-1, 1]
        values = (values - lo) / (hi - lo) * 2.0 - 1.0
    write_wav(run_dir / "reconstruction.wav", values, int(spec.extra.get("sample_rate", 44100)))
    if source is None:
        return {}
    return {"si_snr": si_snr(np.asarray(recon[...]), np.asarray(source[...]))}


def export_volume(spec: SignalSpec, recon, run_dir: Path, source) -> dict[str, float]:
    """reconstruction.obj (the zero level set) and, against the source, IoU and Chamfer distance."""
    points, faces = level_set(recon, spec)
    write_obj(run_dir / "reconstruction.obj", points, faces)
    if source is None:
        return {}
    both = either = 0
    for lo in range(0, spec.grid[0], spec.chunk_rows):
        hi = min(lo + spec.chunk_rows, spec.grid[0])
        counts = occupancy_counts(recon[lo:hi], source[lo:hi])
        both, either = both + counts[0], either + counts[1]
    reference, _ = level_set(source, spec)
    return {
        "iou": 1.0 if either == 0 else both / either,
        "chamfer": chamfer_distance(_subsample(points), _subsample(reference)),
    }


def level_set(volume, spec: SignalSpec) -> tuple[np.ndarray, np.ndarray]:
    """Marching cubes of the zero level set, block by block of rows (each block reads one extra
    row so that no cell is lost): vertices [n, 3] in domain coordinates and faces [m, 3]."""
    from skimage.measure import marching_cubes

    spacing = [(b - a) / (n - 1) for (a, b), n in zip(spec.domain, spec.grid, strict=True)]
    origin = np.array([a for a, _ in spec.domain])
    rows = max(spec.chunk_rows, 2)
    points, faces, count = [], [], 0
    for lo in range(0, spec.grid[0] - 1, rows):
        block = np.asarray(volume[lo : min(lo + rows + 1, spec.grid[0])], dtype=np.float32)[..., 0]
        if block.shape[0] < 2 or block.min() > 0 or block.max() < 0:
            continue
        verts, tris, _, _ = marching_cubes(block, level=0.0, spacing=tuple(spacing))
        points.append(verts + origin + np.array([lo * spacing[0], 0.0, 0.0]))
        faces.append(tris + count)
        count += len(verts)
    if not points:
        return np.empty((0, 3)), np.empty((0, 3), dtype=np.int64)
    return np.concatenate(points), np.concatenate(faces)


def _subsample(points: np.ndarray) -> np.ndarray:
    if len(points) <= CHAMFER_MAX_POINTS:
        return points
    keep = np.random.default_rng(0).choice(len(points), CHAMFER_MAX_POINTS, replace=False)
    return points[keep]


def write_obj(path: Path, points: np.ndarray, faces: np.ndarray) -> None:
    with open(path, "w") as f:
        np.savetxt(f, points, fmt="v %.6f %.6f %.6f")
        np.savetxt(f, faces + 1, fmt="f %d %d %d")
