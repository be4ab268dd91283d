"""Files made from a finished reconstruction, by modality, and the modality's final metrics:
a PNG for images; a WAV and SI-SNR for audio; a marching-cubes mesh (OBJ), the IoU of the
occupancy and the Chamfer distance of the zero level set for signed-distance volumes. Runs on
worker 0 after every worker has written its rows of ``reconstruction.zarr``; no collectives
here. Volumes are read a block of rows at a time."""

import sys
from pathlib import Path

import numpy as np

from nint_dist.metrics import chamfer_distance, occupancy_counts, si_snr
from nint_dist.signal import SignalSpec, unit_values

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
    """reconstruction.png, or for images too large for one a multiscale pyramid."""
    if spec.num_points > PNG_MAX_PIXELS:
        write_pyramid(recon, run_dir / "reconstruction.ome.zarr")
        print(
            f"note: {spec.grid} pixels are too many for a PNG; a multiscale pyramid for viewers"
            f" (napari, QuPath, OpenSeadragon) is in {run_dir / 'reconstruction.ome.zarr'}",
            file=sys.stderr,
        )
        return
    write_png(run_dir / "reconstruction.png", np.asarray(recon[...]), spec)


PNG_CHANNELS = (1, 2, 3, 4)
"""Grey, grey + alpha, RGB and RGBA: the channel counts a PNG holds."""


def to_8bit(values: np.ndarray, spec: SignalSpec) -> np.ndarray:
    """Stored values (any integer or float dtype) → uint8: the signal's whole value range maps
    linearly onto 0..255 (its lower end ↦ 0, its upper end ↦ 255), values outside it are
    clipped, and the result is rounded to nearest (half to even)."""
    return np.rint(np.clip(unit_values(values, spec), 0.0, 1.0) * 255.0).astype(np.uint8)


def write_png(path: Path, values: np.ndarray, spec: SignalSpec) -> None:
    """An 8-bit PNG of an image [H, W, C] in its stored values (as ``reconstruction.zarr`` and
    the signal store hold them, not [0, 1]), through ``to_8bit`` with the signal's value range:
    the one PNG writer of exports and renders. C is 1 (grey), 2 (grey + alpha), 3 (RGB) or 4
    (RGBA)."""
    from PIL import Image

    if values.ndim != 3 or values.shape[-1] not in PNG_CHANNELS:
        raise ValueError(f"a PNG holds an image [H, W, C] with C in {PNG_CHANNELS}, not {values.shape}")
    image = to_8bit(values, spec)
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(path)


PYRAMID_TILE = 512
"""Side of a pyramid level's chunks (tiles), the unit viewers fetch."""


def downsample2(block: np.ndarray) -> np.ndarray:
    """Halve the first two axes of [H, W, ...] by the mean of each 2×2 cell (a last odd row or
    column: the mean of the values it has); integers are rounded to nearest (half to even)."""
    values = block.astype(np.float64)
    height, width = values.shape[:2]
    if height % 2:
        values = np.concatenate([values, values[-1:]], axis=0)  # a repeated edge: its own mean
    if width % 2:
        values = np.concatenate([values, values[:, -1:]], axis=1)
    mean = 0.25 * (values[0::2, 0::2] + values[1::2, 0::2] + values[0::2, 1::2] + values[1::2, 1::2])
    if np.issubdtype(block.dtype, np.integer):
        mean = np.rint(mean)
    return mean.astype(block.dtype)


def write_pyramid(image, path: Path, min_side: int = 256, tile: int = PYRAMID_TILE) -> list[tuple[int, ...]]:
    """An image [H, W, C] (a zarr array, read a band of rows at a time) as an OME-Zarr (NGFF
    0.4) multiscale pyramid at ``path``: arrays "0", "1", … of shape [C, H/2^k, W/2^k], each
    level the 2×2 mean of the one before, down to a long side of at most ``min_side``, and the
    ``multiscales`` metadata napari, QuPath and OpenSeadragon's OME-Zarr readers look for.
    Returns the levels' shapes."""
    import zarr

    height, width, channels = image.shape
    shapes = [(height, width)]
    while max(shapes[-1]) > min_side:
        h, w = shapes[-1]
        shapes.append(((h + 1) // 2, (w + 1) // 2))
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    levels = [
        group.create_array(
            str(k), shape=(channels, h, w), chunks=(1, min(tile, h), min(tile, w)), dtype=image.dtype
        )
        for k, (h, w) in enumerate(shapes)
    ]
    band = 2 * tile  # rows of the level above per block: whole tiles of the level below
    for lo in range(0, height, band):  # level 0: the image itself, channels first
        levels[0][:, lo : lo + band] = np.moveaxis(np.asarray(image[lo : lo + band]), -1, 0)
    for k in range(1, len(levels)):
        above = levels[k - 1]
        for lo in range(0, above.shape[1], band):
            block = np.moveaxis(np.asarray(above[:, lo : lo + band]), 0, -1)
            levels[k][:, lo // 2 : lo // 2 + (block.shape[0] + 1) // 2] = np.moveaxis(
                downsample2(block), -1, 0
            )
    axes = [
        {"name": "c", "type": "channel"},
        {"name": "y", "type": "space"},
        {"name": "x", "type": "space"},
    ]
    datasets = [
        {"path": str(k), "coordinateTransformations": [{"type": "scale", "scale": [1.0, 2.0**k, 2.0**k]}]}
        for k in range(len(levels))
    ]
    group.attrs["multiscales"] = [
        {"version": "0.4", "name": Path(path).stem, "axes": axes, "datasets": datasets, "type": "mean"}
    ]
    return [(channels, h, w) for h, w in shapes]


def export_audio(spec: SignalSpec, recon, run_dir: Path, source) -> dict[str, float]:
    """reconstruction.wav (32-bit float, the source's sample rate) and SI-SNR against the source."""
    from nint_dist.sources.audio import write_wav

    values = np.asarray(recon[...], dtype=np.float64)
    if np.issubdtype(recon.dtype, np.integer):  # PCM: full scale onto [-1, 1]
        values = unit_values(values, spec) * 2.0 - 1.0
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
