"""Choosing the landmark back-end: by name, or ``auto`` (FAN when its weights are on disk,
otherwise dlib), with one line saying why."""

from __future__ import annotations

import logging

from .detector import LandmarkDetector
from .dlib_backend import DlibDetector
from .errors import DetectorUnavailable
from .fan_backend import FanDetector

__all__ = ["DETECTOR_LABELS", "DETECTOR_NAMES", "make_detector"]

logger = logging.getLogger(__name__)

#: Names accepted by :func:`make_detector`.
DETECTOR_NAMES = ("auto", "face_alignment", "dlib")

#: How each backend is named to users (the aligned-face caption says which one ran).
DETECTOR_LABELS = {
    "dlib": "dlib HOG + 68-point landmarks",
    "face_alignment": "face-alignment FAN (S3FD + 2D-FAN-4)",
}


def make_detector(
    name: str = "auto", *, device: str = "cpu", allow_download: bool = False
) -> LandmarkDetector:
    """Create the landmark backend ``name`` and report the choice.

    Args:
        name: ``"auto"`` (face-alignment when its weights are on disk, else dlib),
            ``"face_alignment"`` or ``"dlib"``.
        device: torch device for face-alignment.
        allow_download: let face-alignment fetch missing weights first (never by default).

    Returns:
        A detector whose ``name`` says which backend it is and whose ``reason`` is one line
        (for ``"auto"`` falling back to dlib: which files are missing and where they go). The
        fallback is logged at debug level: dlib is the expected offline default.

    Raises:
        ValueError: unknown ``name``.
        DetectorUnavailable: the requested backend (or, for ``"auto"``, every backend) cannot run.
    """
    if name not in DETECTOR_NAMES:
        raise ValueError(f"unknown detector {name!r}; choose one of {', '.join(DETECTOR_NAMES)}")
    if name == "dlib":
        return DlibDetector(reason="dlib 68-point landmarks (requested)")
    if name == "face_alignment":
        return FanDetector(
            device=device, allow_download=allow_download, reason="face-alignment FAN (requested)"
        )
    try:
        return FanDetector(device=device, allow_download=allow_download)
    except DetectorUnavailable as error:
        fan_problem = str(error)
    try:
        detector = DlibDetector(reason=f"{fan_problem}; using dlib 68-point landmarks instead")
    except DetectorUnavailable as error:
        raise DetectorUnavailable(f"no landmark backend can run: {fan_problem}; {error}") from error
    # dlib is the expected offline default (face-alignment's weights are a separate
    # download): a note for debugging, not a warning on every CLI run and app start.
    logger.debug(detector.reason)
    return detector
