"""The quality metrics, one function each: what it measures and in which units is in its
docstring. Evaluation during training, the final exports (``outputs``), the TensorBoard preview
(``monitor``) and the benchmarks call these; a new metric is a function here, called where its
values are at hand. Pure functions of arrays: nothing here knows of workers or files.

Values are compared in training's units, [0, 1] (the signal's value range mapped linearly),
unless a docstring says otherwise."""

import math


def psnr_from_mse(mse: float, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio, in dB, of a mean squared error ``mse`` over values whose
    range is ``peak`` wide (1 in training's units): 10·log10(peak² / mse); inf for a perfect fit."""
    return float("inf") if mse <= 0 else 10.0 * math.log10(peak * peak / mse)


def si_snr(estimate, reference) -> float:
    """Scale-invariant signal-to-noise ratio, in dB (Le Roux et al. 2019), of two equally long
    signals in any units: both made zero-mean, the target is the estimate's projection on the
    reference, and the ratio is ‖target‖² / ‖estimate − target‖²; inf for an exact match."""
    import numpy as np

    est = np.asarray(estimate, dtype=np.float64).ravel()
    ref = np.asarray(reference, dtype=np.float64).ravel()
    est, ref = est - est.mean(), ref - ref.mean()
    target = (est @ ref) / max(ref @ ref, 1e-300) * ref
    noise = est - target
    if noise @ noise == 0:
        return float("inf")
    return float(10.0 * np.log10(max(target @ target, 1e-300) / (noise @ noise)))


def si_snr_from_sums(
    n: int, sum_e: float, sum_r: float, sum_er: float, sum_ee: float, sum_rr: float
) -> float:
    """``si_snr`` (dB) of an estimate e and a reference r of ``n`` values given only their sums
    (Σe, Σr, Σe·r, Σe², Σr²), which add up over the workers' shards: the SI-SNR of a signal
    spread over workers in one all-reduce."""
    cross = sum_er - sum_e * sum_r / n  # <e - ē, r - r̄>
    ref = max(sum_rr - sum_r * sum_r / n, 1e-300)
    est = sum_ee - sum_e * sum_e / n
    target = cross * cross / ref
    noise = est - target
    if noise <= 0:
        return float("inf")
    return float(10.0 * math.log10(max(target, 1e-300) / noise))


def occupancy_counts(sdf_a, sdf_b) -> tuple[int, int]:
    """(|inside_a ∩ inside_b|, |inside_a ∪ inside_b|), in grid points, with inside = negative
    signed distance; sums over blocks give ``occupancy_iou`` of a volume read block by block."""
    import numpy as np

    a, b = np.asarray(sdf_a) < 0, np.asarray(sdf_b) < 0
    return int((a & b).sum()), int((a | b).sum())


def occupancy_iou(sdf_a, sdf_b) -> float:
    """Intersection over union of two occupancies (inside = negative signed distance), a
    fraction in [0, 1] of grid points; 1 when both are empty."""
    both, either = occupancy_counts(sdf_a, sdf_b)
    return 1.0 if either == 0 else both / either


def chamfer_distance(points_a, points_b) -> float:
    """Symmetric Chamfer distance of two point sets [n, D], in the points' units (a volume's
    coordinate domain): the mean of the two mean nearest-neighbour distances (not squared);
    inf if one set is empty."""
    import numpy as np
    from scipy.spatial import cKDTree

    a, b = np.asarray(points_a, dtype=np.float64), np.asarray(points_b, dtype=np.float64)
    if len(a) == 0 or len(b) == 0:
        return float("inf")
    a_to_b = cKDTree(b).query(a)[0].mean()
    b_to_a = cKDTree(a).query(b)[0].mean()
    return float(0.5 * (a_to_b + b_to_a))


def ssim(image_a, image_b, sigma: float = 1.5, radius: int = 5) -> float:
    """Mean structural similarity (Wang et al. 2004), unitless, at most 1 (identical images),
    of two images [H, W] or [H, W, C] with values in [0, 1]: Gaussian window (σ = 1.5, 11×11),
    K1 = 0.01, K2 = 0.03, population covariances, averaged over the positions where the window
    fits inside the image and over channels."""
    import torch
    import torch.nn.functional as F

    a = torch.as_tensor(image_a, dtype=torch.float64)
    b = torch.as_tensor(image_b, dtype=torch.float64)
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    a, b = a.permute(2, 0, 1)[:, None], b.permute(2, 0, 1)[:, None]  # [C, 1, H, W]
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    window = torch.exp(-(offsets**2) / (2 * sigma**2))
    window = window / window.sum()

    def blur(x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, window.view(1, 1, -1, 1))
        return F.conv2d(x, window.view(1, 1, 1, -1))

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    ratio = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(ratio.mean())
