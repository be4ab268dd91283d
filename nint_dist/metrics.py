"""Quality metrics over values in [0, 1]."""

import math


def psnr_from_mse(mse: float, peak: float = 1.0) -> float:
    """PSNR in dB; infinite for a perfect fit."""
    return float("inf") if mse <= 0 else 10.0 * math.log10(peak * peak / mse)
