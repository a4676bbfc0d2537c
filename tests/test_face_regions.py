"""diffae_app.training.face_regions: the eyes/mouth/cheeks pixel-weight map."""

from __future__ import annotations

import pytest
import torch

from diffae_app.training.face_regions import face_region_weights


def test_face_region_weights_favour_the_small_features_and_keep_mean_one() -> None:
    torch.testing.assert_close(face_region_weights(64, 0.0), torch.ones(64, 64))
    w = face_region_weights(64, 4.0)
    assert w.mean().item() == pytest.approx(1.0, abs=1e-5)
    torch.testing.assert_close(w, w.flip(1))  # symmetric: horizontal flips keep the map
    mouth, left_eye, cheek = w[46, 32], w[30, 24], w[38, 20]  # (y, x) at 64 px
    corner, forehead = w[2, 2], w[16, 32]
    assert min(mouth, left_eye, cheek) > 4 * max(corner, forehead)
    with pytest.raises(ValueError, match=">= 0"):
        face_region_weights(64, -1.0)
