"""The typed errors of alignment: no face, a face too small, no usable detector."""

from __future__ import annotations

__all__ = ["DetectorUnavailable", "FaceTooSmall", "NoFaceFound"]


class NoFaceFound(ValueError):
    """The detector found no face in the image."""


class FaceTooSmall(ValueError):
    """The face is too small in the photo to give a usable aligned crop."""


class DetectorUnavailable(RuntimeError):
    """A landmark backend cannot be used here (package or weight files missing)."""
