"""Image and distribution metrics shared by the evaluation, the benchmarks and the app.

Pure functions over tensors and arrays; nothing here knows about models or files.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image

__all__ = ["frechet_distance", "gaussian_statistics", "pooled_psnr_db", "psnr_db"]


def psnr_db(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of two (B, ...) image batches in [0, 1].

    The mean squared error is clamped at 1e-10, so identical images give 100 dB, not inf.
    """
    mse = (a.float() - b.float()).square().flatten(1).mean(1).clamp_min(1e-10)
    return 10 * torch.log10(1.0 / mse)


def pooled_psnr_db(
    a: torch.Tensor | np.ndarray | Image.Image,
    b: torch.Tensor | np.ndarray | Image.Image,
    *,
    peak: float = 1.0,
    region: np.ndarray | None = None,
) -> float:
    """PSNR in dB of the squared error pooled over all values of two same-shape images or batches.

    Args:
        a, b: tensors, arrays or PIL images (read as their pixel values) of one shape.
        peak: the largest value (1.0 for [0, 1] tensors, 255.0 for 8-bit pixels).
        region: optional boolean mask over the leading axes (an (H, W) mask of (H, W, C)
            pixels) selecting the values that count.

    Returns:
        ``10 log10(peak^2 / mse)``; ``inf`` when the values are identical, so a bit-exact result
        reads as such in a report (``psnr_db`` clamps instead, for averaging).
    """
    x, y = (
        v.detach().double().cpu().numpy()
        if isinstance(v, torch.Tensor)
        else np.asarray(v, np.float64)
        for v in (a, b)
    )
    if x.shape != y.shape:
        raise ValueError(f"PSNR needs images of one shape, got {x.shape} and {y.shape}")
    squared = np.square(x - y)
    mse = float((squared if region is None else squared[region]).mean())
    return math.inf if mse == 0 else 10 * math.log10(peak**2 / mse)


def gaussian_statistics(features: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D) of (N, D) feature vectors, in float64."""
    x = np.asarray(features.detach().cpu() if isinstance(features, torch.Tensor) else features)
    x = x.astype(np.float64).reshape(len(x), -1)
    if len(x) < 2:
        raise ValueError(f"need at least 2 feature vectors for a covariance, got {len(x)}")
    return x.mean(axis=0), np.cov(x, rowvar=False)


def frechet_distance(
    features_a: np.ndarray | torch.Tensor, features_b: np.ndarray | torch.Tensor
) -> float:
    """Fréchet distance between Gaussians fitted to two sets of feature vectors.

    ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))`` (Dowson & Landau 1982; the FID of
    Heusel et al. 2017 is this on Inception features). The trace of the matrix square root is
    taken as the sum of square roots of the eigenvalues of ``S_a^(1/2) S_b S_a^(1/2)``, which is
    symmetric positive semi-definite, so no complex ``sqrtm`` (and none of its failures on the
    rank-deficient covariances of fewer samples than dimensions) is involved.

    Args:
        features_a, features_b: (N, D) and (M, D) arrays of the same D.

    Returns:
        The distance (>= 0; 0 for identical statistics).
    """
    mu_a, cov_a = gaussian_statistics(features_a)
    mu_b, cov_b = gaussian_statistics(features_b)
    if mu_a.shape != mu_b.shape:
        raise ValueError(f"feature sizes differ: {mu_a.shape[0]} and {mu_b.shape[0]}")
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(values.clip(min=0.0))) @ vectors.T
    middle = root_a @ cov_b @ root_a
    trace_root = np.sqrt(np.linalg.eigvalsh((middle + middle.T) / 2).clip(min=0.0)).sum()
    distance = np.square(mu_a - mu_b).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root
    return float(max(distance, 0.0))
