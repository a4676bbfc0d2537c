"""Rendering the FFHQ-aligned crop of a detected face (the pixels; the plan is in
:mod:`.geometry`)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from ..imaging import DEFAULT_MAX_PIXELS, ImageSource, load_image
from .errors import FaceTooSmall
from .faces import AlignedFace, Face
from .geometry import (
    apply_affine,
    border_pads,
    crop_to_photo,
    default_working_size,
    ffhq_quad,
    quad_side,
    read_region,
    region_transform,
    square_to_edges,
    translation,
)

__all__ = ["align_face"]

_MIN_OUTPUT_SIZE = 16
_MAX_OUTPUT_SIZE = 4096
# Rows of the padded region blended at a time by _pad_blur_fade.
_PAD_ROWS_PER_BLOCK = 256


def align_face(
    image: ImageSource,
    face: Face,
    output_size: int = 256,
    *,
    working_size: int | None = None,
    pad_borders: bool = True,
    min_face_size: float = 48.0,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> AlignedFace:
    """Render the FFHQ-aligned crop of ``face``.

    FFHQ's recipe, step by step: the oriented square of :func:`~diffae_app.align.ffhq_quad`;
    very large faces are first reduced by an integer factor (keeping ≥ 2 photo pixels per
    output pixel); the square plus a 10% border is cut out; where it leaves the photo, the
    photo is reflect-padded, the padding blurred and faded to the median colour so no hard edge
    or mirrored face shows; the square is resampled bilinearly to a working size and reduced to
    ``output_size`` with a Lanczos filter. FFHQ's working size was always 4096; the default
    here stops at 4 samples per output pixel and per source pixel, which differs by under half
    a grey level on average and is up to ~20× faster.

    Args:
        image: the photo the face was detected in (same orientation and size).
        face: from :func:`~diffae_app.align.detect_faces` (or built from your own 68 landmarks).
        output_size: side of the crop, 16-4096 (FFHQ models use 64-1024).
        working_size: resampling resolution; default ``min(4096, 4 × output_size,
            max(output_size, 4 × face size after pre-reduction))``; 4096 reproduces FFHQ.
        pad_borders: FFHQ's reflect/blur/fade padding where the crop leaves the photo; when
            False, those areas are black.
        min_face_size: smallest accepted crop side in photo pixels (see
            :attr:`~diffae_app.align.Face.size`).
        max_pixels: decompression-bomb limit passed to ``load_image``.

    Returns:
        The crop, its landmarks and the exact photo<->crop transforms.

    Raises:
        FaceTooSmall: the crop would cover fewer than ``min_face_size`` photo pixels.
        ValueError: bad sizes, or ``image`` is not the photo ``face`` came from.
    """
    if not _MIN_OUTPUT_SIZE <= output_size <= _MAX_OUTPUT_SIZE:
        raise ValueError(
            f"output_size must be between {_MIN_OUTPUT_SIZE} and {_MAX_OUTPUT_SIZE}, "
            f"got {output_size}"
        )
    if working_size is not None and working_size < output_size:
        raise ValueError(
            f"working_size ({working_size}) must be at least output_size ({output_size})"
        )
    photo = load_image(image, max_pixels=max_pixels)
    if photo.size != face.image_size:
        raise ValueError(
            f"the face was found in a {face.image_size[0]}×{face.image_size[1]} image but "
            f"align_face got {photo.size[0]}×{photo.size[1]}; pass the same photo"
        )

    quad = ffhq_quad(face.landmarks)
    side = quad_side(quad)
    if side < min_face_size:
        raise FaceTooSmall(
            f"the face is only {side:.0f} px across in the photo (at least {min_face_size:.0f} "
            "needed); use a larger or closer photo of the face"
        )

    crop, source_box, edge_band = _render(photo, quad, output_size, working_size, pad_borders)
    inverse = crop_to_photo(quad, output_size)
    forward = np.linalg.inv(inverse)
    return AlignedFace(
        image=crop,
        landmarks=apply_affine(forward, face.landmarks),
        forward=forward,
        inverse=inverse,
        output_size=output_size,
        quad=quad,
        source_size=photo.size,
        face=face,
        source_box=source_box,
        edge_band=edge_band,
    )


def _render(
    photo: Image.Image,
    quad: np.ndarray,
    output_size: int,
    working_size: int | None,
    pad_borders: bool,
) -> tuple[Image.Image, tuple[int, int, int, int], float]:
    """FFHQ rendering. Returns the crop, the photo region read, and the blurred edge band."""
    corners = quad + 0.5  # edge coordinates from here on
    side = quad_side(quad)

    # 1. Integer pre-reduction of very large faces, and the region to read (square + border).
    source_box, shrink, border = read_region(quad, output_size, photo.size)
    left, top, right, bottom = source_box
    if shrink > 1:
        size = (max(1, round((right - left) / shrink)), max(1, round((bottom - top) / shrink)))
        region = photo.resize(size, Image.Resampling.LANCZOS, box=source_box)
    else:
        region = photo.crop(source_box)
    to_region = region_transform(source_box, region.size)  # photo edge -> region edge
    scale_x = float(to_region[0, 0])
    region_side = side * scale_x

    # 2. Pad where the square (plus border) leaves the photo.
    edge_band = 0.0
    if pad_borders:
        inner = apply_affine(to_region, corners)
        pads = border_pads(inner, region.size, region_side, border * scale_x)
        if pads is not None:
            region = _pad_blur_fade(region, pads, sigma=region_side * 0.02)
            to_region = translation(pads[0], pads[1]) @ to_region
            # The blur reaches pad/3 into real pixels (see _pad_blur_fade); in photo pixels:
            edge_band = float(pads.max()) / 3.0 / scale_x

    # 3. Resample the square to the working size, then reduce with a Lanczos filter.
    if working_size is None:
        working_size = default_working_size(output_size, region_side)
    working_to_region = to_region @ square_to_edges(corners, working_size)
    rendered = region.transform(
        (working_size, working_size),
        Image.Transform.AFFINE,
        tuple(working_to_region[:2].ravel()),
        resample=Image.Resampling.BILINEAR,
        fillcolor=(0, 0, 0),
    )
    if working_size != output_size:
        rendered = rendered.resize((output_size, output_size), Image.Resampling.LANCZOS)
    return rendered, source_box, edge_band


def _pad_blur_fade(region: Image.Image, pads: np.ndarray, sigma: float) -> Image.Image:
    """FFHQ's border treatment: reflect-pad, blur towards the edges, fade to the median colour.

    ``pads`` is ``(left, top, right, bottom)``. ``ramp`` is 0 at the original edge, 1 at the
    outer edge of the padding and negative inside; the blur weight ``clip(3 ramp + 1)`` starts
    a third of the pad width *inside* the real pixels, which hides the mirror seam.
    """
    left, top, right, bottom = (int(v) for v in pads)
    padded = np.pad(np.asarray(region), ((top, bottom), (left, right), (0, 0)), mode="reflect")
    height, width = padded.shape[:2]
    blurred = np.asarray(Image.fromarray(padded).filter(ImageFilter.GaussianBlur(max(sigma, 0.5))))
    xs = np.arange(width, dtype=np.float32)
    ys = np.arange(height, dtype=np.float32)
    ramp_x = 1.0 - np.minimum(xs / left, (width - 1 - xs) / right)
    ramp_y = 1.0 - np.minimum(ys / top, (height - 1 - ys) / bottom)

    def blur_towards_edges(rows: slice, cols: slice) -> tuple[np.ndarray, np.ndarray]:
        ramp = np.maximum(ramp_y[rows, None], ramp_x[None, cols])
        values = padded[rows, cols].astype(np.float32)
        values += (blurred[rows, cols] - values) * np.clip(ramp * 3.0 + 1.0, 0.0, 1.0)[..., None]
        return values, ramp

    # FFHQ fades to the median of the blurred picture; every 4th pixel gives the same median.
    sample, _ = blur_towards_edges(slice(None, None, 4), slice(None, None, 4))
    median = np.median(sample.reshape(-1, 3), axis=0)

    # Blocks of rows keep the float32 working set small (a 1024 crop of a huge face pads to
    # ~6500² px; all at once that is over a gigabyte).
    result = np.empty_like(padded)
    for first in range(0, height, _PAD_ROWS_PER_BLOCK):
        rows = slice(first, min(first + _PAD_ROWS_PER_BLOCK, height))
        values, ramp = blur_towards_edges(rows, slice(None))
        values += (median - values) * np.clip(ramp, 0.0, 1.0)[..., None]
        result[rows] = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return Image.fromarray(result)
