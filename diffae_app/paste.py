"""Putting an edit back into the photo: the model's whole face, or only the change it made.

A DiffAE model renders faces at its own size (64 px for the bundled model, 256 px for FFHQ256),
while a phone photo's face often spans 500-1500 px. Pasting the *render* back (mode
``"render"``) therefore puts a soft, model-resolution face into a sharp photo, even with no edit.
Mode ``"change"`` (the default) pastes back only what the edit changed:

    edited face = original crop + upsample(render(edited z_sem) - render(z_sem))

with both renders from the same x_T, so everything the edit leaves alone keeps the photo's own
pixels, at the photo's resolution. The sum is linear, so instead of aligning the original at
high resolution, adding the upsampled change and warping the sum back (two resamplings of the
photo), the change alone is warped into the photo with the alignment's inverse transform and
added to the photo's own pixels under the same feathered mask as ``"render"`` mode. With no
edit the change is exactly zero and the photo comes back bit for bit.

The price: a large geometric edit (adding a hat, removing glasses) changes content the photo's
fine detail belonged to, and that detail stays visible under the new content as a faint ghost
(``docs/PASTE.md`` measures it). ``"render"`` mode has no ghosts but loses the detail.

Everything here is pure image maths on the CPU: no model, no device choice.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .align import AlignedFace, align_face, paste_back, paste_mask
from .align.geometry import paste_sample_side, photo_to_crop_grid, quad_side

__all__ = [
    "DEFAULT_PASTE",
    "MAX_DETAIL_CROP",
    "PASTE_MODES",
    "check_paste_mode",
    "compose",
    "detail_crop",
    "paste_change",
]

#: ``"change"``: the photo plus the upsampled change of the edit (keeps the photo's detail);
#: ``"render"``: the model's rendered face replaces the photo's (the model's resolution).
PASTE_MODES = ("change", "render")
DEFAULT_PASTE = "change"

#: Largest side of the aligned crop cut from the edited photo in ``"change"`` mode: the face's
#: own size in the photo, capped here (FFHQ's largest crops are 1024 px).
MAX_DETAIL_CROP = 1024

# Rows warped at a time: bounds the sampling grid's memory for very large faces.
_ROWS_PER_BLOCK = 512


def check_paste_mode(mode: object) -> str:
    """``mode`` if it is one of :data:`PASTE_MODES`; otherwise ValueError with a one-line reason."""
    if mode not in PASTE_MODES:
        raise ValueError(f"paste must be one of {', '.join(PASTE_MODES)}, got {mode!r}")
    return str(mode)


def _as_change(change: torch.Tensor) -> torch.Tensor:
    """(3, S, S) or (1, 3, S, S) float change in image units ([0, 1] scale) -> (1, 3, S, S)."""
    if change.dim() == 3:
        change = change[None]
    if change.dim() != 4 or change.shape[:2] != (1, 3) or change.shape[2] != change.shape[3]:
        raise ValueError(f"the change must be a square (1, 3, S, S) map, got {tuple(change.shape)}")
    return change.detach().to("cpu", torch.float32)


def _resize_change(change: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(1, 3, H, W) -> (1, 3, height, width): bicubic up, antialiased down."""
    width, height = size
    if (height, width) == tuple(change.shape[-2:]):
        return change
    if height >= change.shape[-2] and width >= change.shape[-1]:
        return F.interpolate(change, size=(height, width), mode="bicubic", align_corners=False)
    return F.interpolate(
        change, size=(height, width), mode="bilinear", align_corners=False, antialias=True
    )


def _add(region: Image.Image, change: np.ndarray, weights: np.ndarray | None) -> Image.Image:
    """region + weights × change (change (H, W, 3) in [0, 1] units), rounded to 8 bits."""
    pixels = np.asarray(region, dtype=np.float32)
    delta = change * np.float32(255.0)
    if weights is not None:
        delta *= weights[..., None]
    return Image.fromarray(np.clip(np.rint(pixels + delta), 0, 255).astype(np.uint8))


def paste_change(
    photo: Image.Image,
    change: torch.Tensor,
    aligned: AlignedFace | None,
    *,
    feather: float = 0.1,
) -> Image.Image:
    """The photo plus the edit's change, warped to the photo's resolution.

    Args:
        photo: the RGB photo the face was aligned from (``aligned.source_size``), or, with
            ``aligned=None``, an aligned face picture of any size.
        change: ``render(edit) - render(no edit)``, (1, 3, S, S) or (3, S, S), in image units
            (renders in [0, 1], so values in [-1, 1]).
        aligned: the photo's alignment; None when ``photo`` is itself the aligned face (the
            change is then resized to cover the whole picture, no mask).
        feather: fade width at the crop's edges, a fraction of the crop side (0-0.5), exactly
            as :func:`~diffae_app.align.paste_back`'s.

    Returns:
        A new RGB image of the photo's size. Where the change or the mask is zero it equals
        ``photo`` bit for bit.
    """
    change = _as_change(change)
    if aligned is None:
        resized = _resize_change(change, photo.size)[0].permute(1, 2, 0).numpy()
        return _add(photo, resized, None)
    if photo.size != aligned.source_size:
        raise ValueError(
            f"the crop was aligned from a {aligned.source_size[0]}×{aligned.source_size[1]} "
            f"photo but paste_change got {photo.width}×{photo.height}; pass the same photo"
        )
    mask = paste_mask(aligned, feather=feather)
    box = mask.getbbox()
    result = photo.copy()
    if box is None:
        return result

    # A change map much sharper than the face's footprint in the photo is first reduced with
    # an antialiasing filter, so that bicubic sampling does not alias (as paste_back does).
    reduced = paste_sample_side(change.shape[-1], quad_side(aligned.quad))
    if reduced is not None:
        change = _resize_change(change, (reduced, reduced))

    # Photo pixel centres -> crop pixel centres (the alignment's forward map) -> grid_sample's
    # [-1, 1] coordinates of the change map (align_corners=False: -1 and 1 are its outer edges,
    # whatever its size, so a change map at another resolution than the crop samples the same).
    size = float(aligned.output_size)
    left, top, right, bottom = box
    xs = np.arange(left, right, dtype=np.float64)
    weights = np.asarray(mask.crop(box), dtype=np.float32) / np.float32(255.0)
    for first in range(top, bottom, _ROWS_PER_BLOCK):
        last = min(first + _ROWS_PER_BLOCK, bottom)
        ys = np.arange(first, last, dtype=np.float64)
        crop_x, crop_y = photo_to_crop_grid(aligned.forward, xs, ys)
        grid = np.stack([(crop_x + 0.5) / size * 2 - 1, (crop_y + 0.5) / size * 2 - 1], axis=-1)
        warped = F.grid_sample(
            change,
            torch.from_numpy(grid.astype(np.float32))[None],
            mode="bicubic",
            padding_mode="border",
            align_corners=False,
        )[0].permute(1, 2, 0)
        rows = (left, first, right, last)
        block = _add(photo.crop(rows), warped.numpy(), weights[first - top : last - top])
        result.paste(block, rows[:2])
    return result


def detail_crop(photo: Image.Image, aligned: AlignedFace) -> Image.Image:
    """The aligned face cut from ``photo`` at the face's own resolution in it.

    Its side is the face square's side in photo pixels, at least the model's crop size and at
    most :data:`MAX_DETAIL_CROP`: an edited photo's crop keeps the photo's detail, which a
    model-sized crop would throw away.
    """
    size = min(max(round(quad_side(aligned.quad)), aligned.output_size), MAX_DETAIL_CROP)
    # The crop is at most 1:1 with the photo, so 2x supersampling (up to 1024 px) is within
    # ~54 dB of align_face's default 4x and 3-10x faster: this runs on every render.
    working = max(size, min(2 * size, 1024))
    return align_face(photo, aligned.face, size, working_size=working, min_face_size=0.0).image


def compose(
    photo: Image.Image,
    aligned: AlignedFace | None,
    edited: torch.Tensor,
    reference: torch.Tensor | None,
    rendered: Image.Image,
    *,
    mode: str,
    feather: float = 0.1,
) -> tuple[Image.Image, Image.Image | None, Image.Image]:
    """The full photo, its blend mask and the aligned crop of one render, in one paste mode.

    Args:
        photo: the session's photo (for an aligned input, the aligned picture at its own size).
        aligned: the photo's alignment, or None when ``photo`` is the aligned face itself.
        edited: the edited render, (1, 3, S, S) in [0, 1].
        reference: the unedited render from the same x_T (needed by ``"change"``).
        rendered: ``edited`` as an 8-bit image (the model's crop).
        mode: one of :data:`PASTE_MODES`.
        feather: paste-back fade (fraction of the crop side).

    Returns:
        ``(photo, mask, crop)``: the full-size result; the "L" mask of where it may differ from
        the input (None without an alignment); the aligned face to show and download: the
        model's render in ``"render"`` mode, the edited photo's own-resolution crop in
        ``"change"`` mode.
    """
    mode = check_paste_mode(mode)
    mask = paste_mask(aligned, feather=feather) if aligned is not None else None
    if mode == "render":
        if aligned is not None:
            return paste_back(photo, aligned, rendered, feather=feather), mask, rendered
        if photo.size == rendered.size:
            return rendered, None, rendered
        return rendered.resize(photo.size, Image.Resampling.BICUBIC), None, rendered
    if reference is None:
        raise ValueError("paste mode 'change' needs the unedited render from the same x_T")
    change = edited.detach().cpu().float() - reference.detach().cpu().float()
    pasted = paste_change(photo, change, aligned, feather=feather)
    if aligned is None:
        return pasted, None, pasted
    return pasted, mask, detail_crop(pasted, aligned)
