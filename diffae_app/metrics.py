"""Image and distribution metrics shared by the evaluation, the benchmarks and the app.

Pure functions over tensors and arrays; nothing here knows about models or files.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["frechet_distance", "gaussian_statistics", "psnr_db"]


def psnr_db(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of two (B, ...) image batches in [0, 1].

    The mean squared error is clamped at 1e-10, so identical images give 100 dB, not inf.
    """
    mse = (a.float() - b.float()).square().flatten(1).mean(1).clamp_min(1e-10)
    return 10 * torch.log10(1.0 / mse)


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
