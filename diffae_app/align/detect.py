"""Finding every face of a photo, best first, with 68 landmarks in photo pixels.

The detector (the slow part) runs on a resized copy; landmarks are predicted on the
full-resolution photo.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image

from ..imaging import DEFAULT_MAX_PIXELS, ImageSource, load_image
from .detector import LandmarkDetector
from .errors import NoFaceFound
from .faces import Detection, Face

__all__ = ["CONFIDENT_FRACTION", "detect_faces"]

# Detection runs on a resized copy of the photo holding about the detector's preferred number
# of pixels: large photos are reduced (detection is the slow step), small ones enlarged up to
# this factor (HOG misses faces under ~80 px).
_MAX_DETECTION_UPSCALE = 2.0
# When that finds nothing, one more pass at 4x the pixels (and up to 4x enlargement) looks for
# small faces; it costs time only when the first pass failed.
_RETRY_PIXEL_FACTOR = 4
_RETRY_MAX_UPSCALE = 4.0
#: A detection counts fully towards the ranking only if its score is at least this fraction of
#: the best score in the photo; weaker ones (a face printed on a mission patch, a knot in the
#: wood) sink below real faces even when they are larger.
CONFIDENT_FRACTION = 0.5


def detect_faces(
    image: ImageSource,
    detector: LandmarkDetector,
    *,
    max_detection_pixels: int | None = None,
    max_faces: int = 20,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> list[Face]:
    """Find every face in ``image``, best first.

    The detector (the slow part) sees a copy resized to about ``max_detection_pixels`` (large
    photos reduced, small ones enlarged up to 2×); landmarks are then predicted on the
    full-resolution photo, so their precision does not suffer. If that finds nothing, one more
    pass at 4× the pixels looks for small faces.

    Faces are ranked by size, except that detections scoring under half of the best score
    rank below all confident ones (dlib "finds" faces in patches and textures with low scores).

    Args:
        image: anything :func:`~diffae_app.imaging.load_image` accepts; EXIF orientation is
            applied, so coordinates refer to the upright photo.
        detector: from :func:`~diffae_app.align.make_detector`.
        max_detection_pixels: pixel budget of the detection pass; default
            ``detector.detection_pixels``.
        max_faces: landmarks are predicted for at most this many of the best detections
            (FAN takes seconds per face on a CPU).
        max_pixels: decompression-bomb limit passed to ``load_image``.

    Returns:
        Non-empty list of :class:`~diffae_app.align.Face`, best first.

    Raises:
        NoFaceFound: no face in the photo.
        ImageError: the input is not a usable image.
    """
    budget = detector.detection_pixels if max_detection_pixels is None else max_detection_pixels
    if max_faces < 1:
        raise ValueError(f"max_faces must be at least 1, got {max_faces}")
    if budget < 4096:
        raise ValueError(f"max_detection_pixels must be at least 4096, got {budget}")
    photo = load_image(image, max_pixels=max_pixels)
    pixels = np.asarray(photo)
    width, height = photo.size

    scale = min(_MAX_DETECTION_UPSCALE, math.sqrt(budget / (width * height)))
    detections, scale = _detect_resized(photo, detector, scale)
    if not detections:
        retry = min(_RETRY_MAX_UPSCALE, math.sqrt(_RETRY_PIXEL_FACTOR * budget / (width * height)))
        if retry > scale * 1.25:
            detections, scale = _detect_resized(photo, detector, retry)
    if not detections:
        raise NoFaceFound(
            f"no face found in the {width}×{height} photo (detector: {detector.name}); use a "
            "photo where the face is clearly visible, roughly frontal and not tiny"
        )

    faces = []
    for detection in _rank(detections)[:max_faces]:
        # Resizing scales edge coordinates; pixel-centre coordinates are offset by half a pixel.
        box = tuple((v + 0.5) / scale - 0.5 for v in detection.box)
        points = detector.landmarks(pixels, box)
        faces.append(Face(box, points, detection.score, detector.name, (width, height)))
    return faces


def _detect_resized(
    photo: Image.Image, detector: LandmarkDetector, scale: float
) -> tuple[list[Detection], float]:
    """Run the detector on ``photo`` resized by about ``scale``; returns the exact scale used."""
    width, height = photo.size
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if abs(size[0] - width) <= 1 and abs(size[1] - height) <= 1:
        return detector.detect(np.asarray(photo)), 1.0
    # reducing_gap: a fast integer pre-reduction, then an exact filter; plenty for detection.
    resized = photo.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    # The factor actually applied along x; along y it differs by under a pixel over the photo.
    return detector.detect(np.asarray(resized)), size[0] / width


def _rank(detections: Sequence[Detection]) -> list[Detection]:
    """Largest first, but every confident detection before any weak one."""
    best = max(detection.score for detection in detections)
    # Scores are only comparable as fractions of a positive best; otherwise rank by size alone.
    threshold = best * CONFIDENT_FRACTION if best > 0 else -math.inf

    def key(detection: Detection) -> tuple[bool, float]:
        confident = detection.score >= threshold
        left, top, right, bottom = detection.box
        return (not confident, -(right - left) * (bottom - top))

    return sorted(detections, key=key)
