"""A pixel-weight map for the autoencoder's loss that favours the small facial features.

Face geometry lives here, not in the stateless diffusion math: `diffusion.eps_loss` only takes
the map (`pixel_weights`).
"""

from __future__ import annotations

import torch

# Centres and spreads (fractions of the image side, x right, y down) of the small facial
# features in an FFHQ-aligned crop: both eyes, the mouth, both cheeks. The aligner puts the eyes
# at about (0.375, 0.472) and (0.625, 0.472) for every photo (`align.geometry.ffhq_eye_template`;
# SynthFaces draws them at y 0.475, a fifth of a pixel away at 64 px), so one fixed map covers
# every training image; it is left-right symmetric, so flips keep it. The mouth bump sits at
# y 0.725, where SynthFaces draws the mouth (FFHQ's typical face has it at 0.75,
# `ffhq_mouth_template`); sigma_y 0.05 covers both.
_FACE_REGIONS = (
    # (x, y, sigma_x, sigma_y)
    (0.375, 0.475, 0.06, 0.04),
    (0.625, 0.475, 0.06, 0.04),
    (0.5, 0.725, 0.09, 0.05),
    (0.31, 0.6, 0.05, 0.05),
    (0.69, 0.6, 0.05, 0.05),
)


def face_region_weights(size: int, strength: float) -> torch.Tensor:
    """A (size, size) pixel-weight map 1 + strength x (Gaussian bumps on the eyes, mouth and
    cheeks), normalised to mean 1.

    A mouth is about 1% of a 64-px face's pixels, so a per-pixel loss barely notices whether the
    decoder drew it smiling or open; at the noisy timesteps where only z_sem can say so, that
    error costs too little for the encoder to carry it. Raising those pixels' weight makes the
    small features worth encoding. strength 0 is the uniform (official) weighting.
    """
    if strength < 0:
        raise ValueError(f"the face-region weight must be >= 0, got {strength}")
    centres = (torch.arange(size, dtype=torch.float64) + 0.5) / size
    y, x = torch.meshgrid(centres, centres, indexing="ij")
    bumps = torch.zeros(size, size, dtype=torch.float64)
    for cx, cy, sx, sy in _FACE_REGIONS:
        bump = torch.exp(-0.5 * (((x - cx) / sx) ** 2 + ((y - cy) / sy) ** 2))
        bumps = torch.maximum(bumps, bump)
    weights = 1.0 + strength * bumps
    return (weights / weights.mean()).float()
