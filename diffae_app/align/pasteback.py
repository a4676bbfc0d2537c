"""Putting an edited aligned crop back into the full-resolution photo under a feathered mask;
every pixel outside the mask is returned unchanged.

:mod:`diffae_app.paste` builds its change-only mode on :func:`paste_mask` and the same
geometry.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from ..imaging import ImageSource, load_image
from .faces import AlignedFace
from .geometry import paste_sample_side, photo_to_crop_grid, quad_side, translation

__all__ = ["paste_back", "paste_mask"]


def paste_mask(aligned: AlignedFace, *, feather: float = 0.1) -> Image.Image:
    """The blend mask :func:`paste_back` uses, at photo resolution.

    Returns:
        Mode ``"L"`` image of the photo's size: 255 where the edited crop replaces the photo,
        0 where the photo is kept exactly, smooth in between.
    """
    box, weights = _mask_region(aligned, feather)
    mask = Image.new("L", aligned.source_size, 0)
    if weights is not None:
        mask.paste(_weights_to_l(weights), box[:2])
    return mask


def paste_back(
    original: ImageSource,
    aligned: AlignedFace,
    edited_crop: ImageSource,
    *,
    feather: float = 0.1,
) -> Image.Image:
    """Put an edited aligned crop back into the full-resolution photo.

    The crop is warped with the exact inverse of the alignment (bicubic; pre-reduced with a
    Lanczos filter when it is much sharper than the photo region) and blended under a mask that
    fades over ``feather`` × the crop side at the crop's edges, and over the blurred band where
    the crop had to be padded at the photo border.

    Args:
        original: the photo that was aligned (same orientation and size).
        aligned: the result of :func:`~diffae_app.align.align_face` for it.
        edited_crop: the edited crop; any square size (a model working at a different
            resolution is fine).
        feather: fade width as a fraction of the crop side, 0 (hard edge) to 0.5.

    Returns:
        A new RGB image, same size as ``original``; every pixel where the mask is 0 is
        bit-identical to ``original``.

    Raises:
        ValueError: wrong sizes or ``feather`` out of range.
    """
    photo = load_image(original)
    if photo.size != aligned.source_size:
        raise ValueError(
            f"the crop was aligned from a {aligned.source_size[0]}×{aligned.source_size[1]} "
            f"photo but paste_back got {photo.width}×{photo.height}; pass the same photo"
        )
    edited = load_image(edited_crop, name="the edited crop")
    if edited.width != edited.height:
        raise ValueError(f"the edited crop must be square, got {edited.width}×{edited.height}")
    box, weights = _mask_region(aligned, feather)
    if weights is None:
        return photo

    # A crop much sharper than the photo region is first reduced (Lanczos) so that bicubic
    # sampling does not alias; reducing it all the way to the photo's scale would blur twice.
    reduced = paste_sample_side(edited.width, quad_side(aligned.quad))
    if reduced is not None:
        edited = edited.resize((reduced, reduced), Image.Resampling.LANCZOS)

    # region edge coords -> photo edge -> photo centre -> crop centre -> crop edge -> edited edge
    shift = translation(box[0] - 0.5, box[1] - 0.5)
    zoom = edited.width / aligned.output_size
    to_edited = np.diag([zoom, zoom, 1.0]) @ translation(0.5, 0.5) @ aligned.forward @ shift
    region_size = (box[2] - box[0], box[3] - box[1])
    warped = edited.transform(
        region_size,
        Image.Transform.AFFINE,
        tuple(to_edited[:2].ravel()),
        resample=Image.Resampling.BICUBIC,
    )
    region = photo.crop(box)
    photo.paste(Image.composite(warped, region, _weights_to_l(weights)), box[:2])
    return photo


def _mask_region(
    aligned: AlignedFace, feather: float
) -> tuple[tuple[int, int, int, int], np.ndarray | None]:
    """Blend weights in [0, 1] over the photo box the crop covers (``None`` if it covers none)."""
    if not 0.0 <= feather <= 0.5:
        raise ValueError(f"feather must be between 0 and 0.5 (fraction of the crop), got {feather}")
    width, height = aligned.source_size
    corners = aligned.quad + 0.5
    box = (
        max(math.floor(corners[:, 0].min()), 0),
        max(math.floor(corners[:, 1].min()), 0),
        min(math.ceil(corners[:, 0].max()), width),
        min(math.ceil(corners[:, 1].max()), height),
    )
    if box[2] <= box[0] or box[3] <= box[1]:
        return box, None

    xs = np.arange(box[0], box[2], dtype=np.float64)
    ys = np.arange(box[1], box[3], dtype=np.float64)
    crop_x, crop_y = photo_to_crop_grid(aligned.forward, xs, ys)
    size = aligned.output_size
    # Distance (crop pixels) from each photo pixel centre to the nearest crop edge.
    inside_x = np.minimum(crop_x + 0.5, size - 0.5 - crop_x)
    inside_y = np.minimum(crop_y + 0.5, size - 0.5 - crop_y)
    weights = _ramp(inside_x, feather * size) * _ramp(inside_y, feather * size)

    if aligned.edge_band > 0:
        left, top, right, bottom = aligned.source_box
        band = aligned.edge_band
        weights *= _ramp(np.minimum(xs + 0.5 - left, right - 0.5 - xs), band)[None, :]
        weights *= _ramp(np.minimum(ys + 0.5 - top, bottom - 0.5 - ys), band)[:, None]
    return box, weights


def _ramp(distance: np.ndarray, width: float) -> np.ndarray:
    """0 at distance <= 0, 1 from ``width`` on, smoothstep in between (hard step if width=0)."""
    if width <= 0:
        return (distance > 0).astype(np.float64)
    t = np.clip(distance / width, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _weights_to_l(weights: np.ndarray) -> Image.Image:
    return Image.fromarray(np.rint(weights * 255.0).astype(np.uint8))
