"""The studio: one facade (:class:`Studio`) over small parts, each owning one step.

- ``facade``: :class:`Studio`, which sequences the steps; every per-request choice is an
  argument.
- ``loading``: device and precision choice, model specs -> loaded weights.
- ``fingerprints``: which weights a session, recipe or classifier belongs to.
- ``sessions``: photo -> detected, aligned, encoded and inverted session.
- ``rendering``: an edit of a session: solve strengths, render, measure, correct, paste back.
- ``sampling``: random faces from the latent DPM, interpolation between two faces.
- ``custom_attributes``: new sliders fitted to example faces.
- ``recipes`` / ``encoding_files``: replayable edits, portable encodings.
- ``arguments``: one-line checks of step counts and seeds.
- ``media``: GIF, strip and grid writers.
"""

from .facade import Studio
from .fingerprints import fit_fingerprint, model_fingerprint
from .loading import DEFAULT_MODEL_DIR, choose_device
from .media import grid, write_gif, write_strip
from .sessions import MIN_RELATIVE_FACE_SCORE, usable_faces

__all__ = [
    "DEFAULT_MODEL_DIR",
    "MIN_RELATIVE_FACE_SCORE",
    "Studio",
    "choose_device",
    "fit_fingerprint",
    "grid",
    "model_fingerprint",
    "usable_faces",
    "write_gif",
    "write_strip",
]
