"""The studio's user-facing errors: one line each, meant to be shown as they are.

Every problem a request can have is a :class:`StudioError` (a ``ValueError``, the project's
convention for bad input). This module imports nothing of the project, so the pure maths
(``editing.py``) and the plain data (``session.py``) can raise these without depending on
anything above them.
"""

from __future__ import annotations

__all__ = [
    "EditError",
    "EncodingError",
    "FaceIndexError",
    "NoAttributeClassifier",
    "NoLatentDPM",
    "RecipeError",
    "StudioError",
]


class StudioError(ValueError):
    """A request the studio cannot carry out; the message is one line for the end user."""


class FaceIndexError(StudioError):
    """The requested face does not exist in the photo."""


class EditError(StudioError):
    """Strengths, locks, targets or custom-attribute examples that cannot be used."""


class RecipeError(StudioError):
    """A recipe that is malformed or was made with another model."""


class EncodingError(StudioError):
    """An exported encoding that is unreadable or belongs to another model."""


class NoLatentDPM(StudioError):
    """Random faces were requested from a model without a latent DPM."""


class NoAttributeClassifier(StudioError):
    """Attributes were requested from a model without an attribute classifier."""
