"""diffae_app.metrics: PSNR and the Fréchet distance against closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from diffae_app.metrics import frechet_distance, pooled_psnr_db, psnr_db


def test_psnr_of_known_error() -> None:
    a = torch.zeros(2, 3, 4, 4)
    b = a + 0.1  # mse 0.01 -> 20 dB
    assert torch.allclose(psnr_db(a, b), torch.tensor([20.0, 20.0]), atol=1e-4)
    assert float(psnr_db(a, a)[0]) == pytest.approx(100.0)  # clamped, not inf


def test_pooled_psnr_of_tensors_images_and_a_region() -> None:
    a = torch.zeros(2, 3, 4, 4)
    assert pooled_psnr_db(a, a + 0.1) == pytest.approx(20.0, abs=1e-4)
    assert pooled_psnr_db(a, a) == float("inf")  # a bit-exact result reads as such
    pixels = np.zeros((4, 4, 3), np.uint8)
    other = pixels.copy()
    other[0, 0] = 51  # error only outside the region below
    region = np.ones((4, 4), bool)
    region[0, 0] = False
    image, changed = Image.fromarray(pixels), Image.fromarray(other)
    assert pooled_psnr_db(image, changed, peak=255.0, region=region) == float("inf")
    expected = 10 * np.log10(255.0**2 / (51.0**2 * 3 / 48))
    assert pooled_psnr_db(image, changed, peak=255.0) == pytest.approx(expected)
    with pytest.raises(ValueError, match="one shape"):
        pooled_psnr_db(a, a[:1])


def test_frechet_distance_of_diagonal_gaussians_matches_the_closed_form() -> None:
    rng = np.random.default_rng(0)
    n, d = 200_000, 3
    mean_a, mean_b = np.array([0.0, 1.0, -1.0]), np.array([0.5, 1.0, 0.0])
    std_a, std_b = np.array([1.0, 2.0, 0.5]), np.array([1.5, 1.0, 0.5])
    a = mean_a + std_a * rng.standard_normal((n, d))
    b = mean_b + std_b * rng.standard_normal((n, d))
    # Diagonal covariances commute: tr(Sa + Sb - 2 sqrt(Sa Sb)) = sum (std_a - std_b)^2.
    expected = np.square(mean_a - mean_b).sum() + np.square(std_a - std_b).sum()
    assert frechet_distance(a, b) == pytest.approx(expected, rel=0.02)


def test_frechet_distance_with_correlated_features_is_symmetric_and_zero_on_itself() -> None:
    rng = np.random.default_rng(1)
    mix = rng.standard_normal((8, 8))
    a = rng.standard_normal((500, 8)) @ mix
    b = rng.standard_normal((500, 8)) @ mix.T + 0.3
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-6)
    assert frechet_distance(a, b) > 1.0


def test_frechet_distance_with_fewer_samples_than_dimensions_is_finite() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((20, 64)), rng.standard_normal((20, 64)) + 1.0
    value = frechet_distance(torch.from_numpy(a).float(), b)
    assert np.isfinite(value) and value > 32  # the mean shift alone is 64


def test_frechet_distance_refuses_mismatched_sizes() -> None:
    with pytest.raises(ValueError, match="feature sizes differ"):
        frechet_distance(np.zeros((4, 3)), np.zeros((4, 5)))
