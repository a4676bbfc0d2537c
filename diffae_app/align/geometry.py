"""FFHQ alignment as pure geometry: landmarks in, the crop square and its transforms out.

Numbers only (numpy): no pixels are read or written here, so every rule of FFHQ's recipe
(Karras et al. 2019, ``download_ffhq.py``, ``recreate_aligned_images``) can be checked on its
own. :mod:`.crop` and :mod:`.pasteback` apply these plans to pictures.

Coordinates: "pixel-centre coordinates" put the centre of pixel ``(column i, row j)`` at
``(x, y) = (i, j)``; landmarks, boxes, quads and the 3×3 transforms use them. "Edge
coordinates" (PIL's) put that centre at ``(i + 0.5, j + 0.5)``; functions that work in them
say so.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "FFHQ_WORKING_SIZE",
    "NUM_LANDMARKS",
    "PASTE_MAX_ZOOM",
    "Box",
    "apply_affine",
    "border_pads",
    "crop_to_photo",
    "default_working_size",
    "eye_centres",
    "ffhq_eye_template",
    "ffhq_mouth_template",
    "ffhq_quad",
    "paste_sample_side",
    "photo_to_crop_grid",
    "quad_side",
    "read_region",
    "region_transform",
    "square_to_edges",
    "translation",
]

#: ``(left, top, right, bottom)``.
Box = tuple[float, float, float, float]

NUM_LANDMARKS = 68
# Index ranges of the iBUG 68-point convention shared by dlib and FAN. "Left" means the left of
# the image (the subject's right eye).
_LEFT_EYE = slice(36, 42)
_RIGHT_EYE = slice(42, 48)
_MOUTH_LEFT_CORNER = 48
_MOUTH_RIGHT_CORNER = 54

#: FFHQ resampled every crop at this size, then reduced it.
FFHQ_WORKING_SIZE = 4096
# At most 4 samples per output pixel and per source pixel give the same crop as FFHQ's 4096
# within ~0.3 grey levels on average (see tests) at a small fraction of the cost.
_WORKING_SUPERSAMPLING = 4

#: Paste-back samples an edited crop (or change map) bicubically at up to this many crop pixels
#: per photo pixel; a sharper one is first reduced to that. Bicubic starts to alias beyond ~2,
#: while reducing all the way to 1 blurs twice (round trip of Grace Hopper at 512: 2.1 grey
#: levels vs 1.5 at 2).
PASTE_MAX_ZOOM = 2.0


# --------------------------------------------------------------------------------------------
# The FFHQ square


def ffhq_quad(landmarks: np.ndarray) -> np.ndarray:
    """The FFHQ crop square for 68 landmarks.

    FFHQ's recipe: ``x`` runs along the eye line averaged with the perpendicular of the
    eye-to-mouth axis (so a crooked mouth or tilted head does not skew the crop); the half-side
    is the larger of 2× the eye distance and 1.8× the eye-to-mouth distance; the centre sits
    10% of the way from the eyes' midpoint to the mouth's.

    Args:
        landmarks: ``(68, 2)`` points in any pixel frame.

    Returns:
        ``(4, 2)`` corners in the same frame: top-left, bottom-left, bottom-right, top-right.
    """
    points = np.asarray(landmarks, dtype=np.float64)
    if points.shape != (NUM_LANDMARKS, 2):
        raise ValueError(f"expected ({NUM_LANDMARKS}, 2) landmarks, got {points.shape}")
    eye_left, eye_right = eye_centres(points)
    eye_mid = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_mid = (points[_MOUTH_LEFT_CORNER] + points[_MOUTH_RIGHT_CORNER]) * 0.5
    eye_to_mouth = mouth_mid - eye_mid

    # Rotating eye_to_mouth by -90° gives a second estimate of the eye-line direction.
    x_axis = eye_to_eye + np.array([eye_to_mouth[1], -eye_to_mouth[0]])
    length = float(np.hypot(*x_axis))
    if not math.isfinite(length) or length < 1e-6:
        raise ValueError("landmarks are degenerate (eyes and mouth coincide)")
    half_side = max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    x_axis = x_axis / length * half_side
    y_axis = np.array([-x_axis[1], x_axis[0]])  # x rotated +90°: points down the face.
    centre = eye_mid + eye_to_mouth * 0.1
    return np.stack(
        [
            centre - x_axis - y_axis,
            centre - x_axis + y_axis,
            centre + x_axis + y_axis,
            centre + x_axis - y_axis,
        ]
    )


def eye_centres(landmarks: np.ndarray) -> np.ndarray:
    """``(2, 2)``: centres of the image-left and image-right eye of ``(68, 2)`` landmarks."""
    return np.stack([landmarks[_LEFT_EYE].mean(0), landmarks[_RIGHT_EYE].mean(0)])


def quad_side(quad: np.ndarray) -> float:
    """Side of the crop square ``quad`` (from :func:`ffhq_quad`), in the quad's pixels."""
    return float(np.linalg.norm(quad[3] - quad[0]))


def ffhq_eye_template(size: int) -> np.ndarray:
    """Where FFHQ alignment puts the eye centres in a ``size`` × ``size`` crop.

    The recipe of :func:`ffhq_quad` fixes the crop relative to the eyes and mouth; for an
    upright face whose eye-to-mouth distance is 10/9 of its eye distance (typical, and where
    FFHQ's two scale rules agree) the eyes land at x = 3/8 and 5/8 of the side and at
    y = 17/36 ≈ 0.472 of it. Real faces differ by a few percent with their proportions.

    Returns:
        ``(2, 2)`` float array: image-left then image-right eye, ``(x, y)`` in pixel-centre
        coordinates of the crop.
    """
    y = size * 17.0 / 36.0 - 0.5
    return np.array([[size * 0.375 - 0.5, y], [size * 0.625 - 0.5, y]])


def ffhq_mouth_template(size: int) -> np.ndarray:
    """Centre of the mouth (midpoint of its corners) in a ``size`` crop, for the same typical
    face as :func:`ffhq_eye_template`: ``(size / 2, 3 size / 4)`` in edge coordinates.

    Returns:
        ``(2,)`` float array ``(x, y)``, pixel-centre coordinates.
    """
    return np.array([size * 0.5 - 0.5, size * 0.75 - 0.5])


# --------------------------------------------------------------------------------------------
# Affine maps (3×3, homogeneous column vectors [x, y, 1])


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``(N, 2)`` points mapped by the 3×3 affine ``matrix``."""
    return points @ matrix[:2, :2].T + matrix[:2, 2]


def translation(dx: float, dy: float) -> np.ndarray:
    """The 3×3 affine that adds ``(dx, dy)``."""
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def crop_to_photo(quad: np.ndarray, size: int) -> np.ndarray:
    """Affine crop -> photo in pixel-centre coordinates.

    In edge coordinates the crop ``[0, size]²`` maps onto the quad: corner ``(0, 0)`` to
    ``quad[0] + 0.5``, ``x`` along ``quad[3] - quad[0]``, ``y`` along ``quad[1] - quad[0]``.
    Converting both sides to pixel-centre coordinates leaves a half-pixel term.
    """
    along_x = (quad[3] - quad[0]) / size
    along_y = (quad[1] - quad[0]) / size
    origin = quad[0] + 0.5 * (along_x + along_y)
    return np.array(
        [[along_x[0], along_y[0], origin[0]], [along_x[1], along_y[1], origin[1]], [0.0, 0.0, 1.0]]
    )


def square_to_edges(corners: np.ndarray, size: int) -> np.ndarray:
    """Affine from a ``size`` square's edge coordinates onto ``corners`` (a quad in edge
    coordinates): what PIL's ``Image.transform`` needs to sample the square."""
    along_x = (corners[3] - corners[0]) / size
    along_y = (corners[1] - corners[0]) / size
    return np.array(
        [
            [along_x[0], along_y[0], corners[0][0]],
            [along_x[1], along_y[1], corners[0][1]],
            [0.0, 0.0, 1.0],
        ]
    )


def photo_to_crop_grid(
    forward: np.ndarray, xs: np.ndarray, ys: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Crop coordinates ``(crop_x, crop_y)``, each ``(len(ys), len(xs))``, of the photo pixel
    centres on the grid ``xs`` × ``ys``, under the photo -> crop affine ``forward``."""
    grid_x, grid_y = np.meshgrid(xs, ys)
    crop_x = forward[0, 0] * grid_x + forward[0, 1] * grid_y + forward[0, 2]
    crop_y = forward[1, 0] * grid_x + forward[1, 1] * grid_y + forward[1, 2]
    return crop_x, crop_y


# --------------------------------------------------------------------------------------------
# FFHQ's rendering plan


def read_region(
    quad: np.ndarray, output_size: int, photo_size: tuple[int, int]
) -> tuple[tuple[int, int, int, int], int, int]:
    """Which part of the photo FFHQ reads for a crop, and how much it pre-reduces it.

    Very large faces are first reduced by an integer factor (keeping ≥ 2 photo pixels per
    output pixel); the square plus a 10% border (at least 3 px) is read, clipped to the photo.

    Returns:
        ``(box, shrink, border)``: the photo *edge*-coordinate box ``(left, top, right,
        bottom)`` to read, the integer reduction factor, and the border in photo pixels.

    Raises:
        ValueError: the square lies entirely outside the photo.
    """
    width, height = photo_size
    corners = quad + 0.5
    side = quad_side(quad)
    shrink = max(1, int(math.floor(side / output_size * 0.5)))
    border = max(round(side * 0.1), 3)
    left = max(math.floor(corners[:, 0].min()) - border, 0)
    top = max(math.floor(corners[:, 1].min()) - border, 0)
    right = min(math.ceil(corners[:, 0].max()) + border, width)
    bottom = min(math.ceil(corners[:, 1].max()) + border, height)
    if right <= left or bottom <= top:
        raise ValueError("the face's crop lies entirely outside the photo")
    return (left, top, right, bottom), shrink, border


def region_transform(box: tuple[int, int, int, int], region_size: tuple[int, int]) -> np.ndarray:
    """Affine photo edge coordinates -> edge coordinates of ``box`` read at ``region_size``."""
    left, top, right, bottom = box
    scale_x = region_size[0] / (right - left)
    scale_y = region_size[1] / (bottom - top)
    return np.array(
        [[scale_x, 0.0, -left * scale_x], [0.0, scale_y, -top * scale_y], [0.0, 0.0, 1.0]]
    )


def border_pads(
    inner: np.ndarray, region_size: tuple[int, int], region_side: float, region_border: float
) -> np.ndarray | None:
    """FFHQ's padding of the region read, where the square (plus border) leaves the photo.

    Args:
        inner: ``(4, 2)`` the square's corners in region edge coordinates.
        region_size: ``(width, height)`` of the region read.
        region_side: the square's side in region pixels.
        region_border: the border in region pixels.

    Returns:
        ``(left, top, right, bottom)`` integer pads, at least 30% of the side (and 1) each; or
        None when the square stays more than 4 px inside the photo (FFHQ's rule: no padding).
    """
    width, height = region_size
    pads = np.array(
        [
            -math.floor(inner[:, 0].min()) + region_border,
            -math.floor(inner[:, 1].min()) + region_border,
            math.ceil(inner[:, 0].max()) - width + region_border,
            math.ceil(inner[:, 1].max()) - height + region_border,
        ]
    ).clip(min=0)
    if pads.max() <= region_border - 4:
        return None
    return np.maximum(pads, round(region_side * 0.3)).clip(min=1).astype(int)


def default_working_size(output_size: int, region_side: float) -> int:
    """The resolution the square is resampled at before the final Lanczos reduction.

    Bilinear sampling must never *reduce* (it would alias), and beyond ~4 samples per source
    pixel or per output pixel nothing changes visibly; 4096 was FFHQ's fixed choice.
    """
    working_size = min(
        FFHQ_WORKING_SIZE,
        _WORKING_SUPERSAMPLING * output_size,
        max(output_size, math.ceil(_WORKING_SUPERSAMPLING * region_side)),
    )
    return max(working_size, output_size)


def paste_sample_side(crop_side: int, face_side: float) -> int | None:
    """The side to reduce a ``crop_side`` square image to before it is warped into a face
    ``face_side`` photo pixels across, or None when it is not sharp enough to alias
    (see :data:`PASTE_MAX_ZOOM`)."""
    if crop_side > PASTE_MAX_ZOOM * face_side:
        return max(8, math.ceil(PASTE_MAX_ZOOM * face_side))
    return None
