"""The one interface every landmark back-end implements (:mod:`.dlib_backend`,
:mod:`.fan_backend`); :func:`~diffae_app.align.make_detector` picks one."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from .faces import Detection
from .geometry import Box

__all__ = ["LandmarkDetector"]


@runtime_checkable
class LandmarkDetector(Protocol):
    """A face detector plus 68-point landmark predictor.

    Implementations load their models lazily (first call) and may be shared between threads.
    Images are ``uint8`` RGB arrays ``(H, W, 3)``.
    """

    #: Backend name as reported to the user, e.g. ``"dlib"``.
    name: str
    #: One line saying why this backend is in use (fallback reasons included).
    reason: str
    #: Pixel count :func:`~diffae_app.align.detect_faces` resizes photos to before calling
    #: :meth:`detect`.
    detection_pixels: int

    def detect(self, image: np.ndarray) -> list[Detection]:
        """All face boxes in ``image``, in its pixel-centre coordinates."""
        ...

    def landmarks(self, image: np.ndarray, box: Box) -> np.ndarray:
        """``(68, 2)`` landmarks of the face in ``box`` (coordinates of ``image``)."""
        ...
