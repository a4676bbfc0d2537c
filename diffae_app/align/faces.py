"""What alignment hands out: detector boxes, detected faces, aligned crops (frozen records)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from .geometry import NUM_LANDMARKS, Box, eye_centres, ffhq_quad, quad_side

__all__ = ["AlignedFace", "Detection", "Face"]


@dataclass(frozen=True)
class Detection:
    """One face box from a detector, in the coordinates of the image it was run on.

    Attributes:
        box: ``(left, top, right, bottom)`` in pixel-centre coordinates.
        score: the detector's confidence; comparable only within one backend (dlib: SVM margin,
            typically 0-3; face-alignment's S3FD: probability in [0, 1]).
    """

    box: Box
    score: float


@dataclass(frozen=True, eq=False)
class Face:
    """A detected face in the original photo.

    Attributes:
        box: ``(left, top, right, bottom)`` in photo pixels (pixel-centre coordinates).
        landmarks: ``float64`` array ``(68, 2)`` of ``(x, y)`` in photo pixels, iBUG 68-point
            order; read-only.
        score: detector confidence (see :class:`Detection`).
        backend: name of the detector that produced it (``"dlib"`` or ``"face_alignment"``).
        image_size: ``(width, height)`` of the upright photo it was found in.
    """

    box: Box
    landmarks: np.ndarray
    score: float
    backend: str
    image_size: tuple[int, int]

    def __post_init__(self) -> None:
        landmarks = np.array(self.landmarks, dtype=np.float64)
        if landmarks.shape != (NUM_LANDMARKS, 2) or not np.all(np.isfinite(landmarks)):
            raise ValueError(
                f"landmarks must be a finite ({NUM_LANDMARKS}, 2) array, got shape "
                f"{landmarks.shape}"
            )
        landmarks.flags.writeable = False
        object.__setattr__(self, "landmarks", landmarks)
        object.__setattr__(self, "box", tuple(float(v) for v in self.box))
        object.__setattr__(self, "image_size", (int(self.image_size[0]), int(self.image_size[1])))

    @property
    def eye_centres(self) -> np.ndarray:
        """``(2, 2)``: centres of the image-left and image-right eye, photo pixels."""
        return eye_centres(self.landmarks)

    @property
    def size(self) -> float:
        """Side of the square the FFHQ crop takes in the photo, in photo pixels."""
        return quad_side(ffhq_quad(self.landmarks))


@dataclass(frozen=True, eq=False)
class AlignedFace:
    """An FFHQ-aligned crop and everything needed to put an edited version back.

    Attributes:
        image: the aligned crop, RGB, ``output_size`` × ``output_size``.
        landmarks: ``(68, 2)`` landmarks in crop pixels (pixel-centre coordinates).
        forward: ``(3, 3)`` affine matrix mapping photo pixel-centre coordinates to crop
            pixel-centre coordinates (homogeneous column vectors ``[x, y, 1]``).
        inverse: ``(3, 3)`` inverse of ``forward`` (crop -> photo).
        output_size: side of the crop in pixels.
        quad: ``(4, 2)`` photo coordinates of the crop's outer corners: top-left, bottom-left,
            bottom-right, top-right (the order of FFHQ's quad).
        source_size: ``(width, height)`` of the upright photo.
        face: the detection this crop was made from.
        source_box: ``(left, top, right, bottom)`` photo *edge* coordinates of the region that
            was read to render the crop.
        edge_band: width in photo pixels, measured inward from the edges of ``source_box``,
            over which FFHQ's border padding blurred real pixels; 0 when the face did not reach
            the photo border. :func:`~diffae_app.align.paste_back` fades out over this band so
            no blur is pasted.
    """

    image: Image.Image
    landmarks: np.ndarray
    forward: np.ndarray
    inverse: np.ndarray
    output_size: int
    quad: np.ndarray
    source_size: tuple[int, int]
    face: Face
    source_box: tuple[int, int, int, int]
    edge_band: float = 0.0

    def __post_init__(self) -> None:
        for name in ("landmarks", "forward", "inverse", "quad"):
            array = np.array(getattr(self, name), dtype=np.float64)
            array.flags.writeable = False
            object.__setattr__(self, name, array)
