"""Reading what an event sends: quality presets, seeds, face choices, photos, progress bars.

Each function turns one raw widget value into what the studio takes, or refuses it with a
one-line ``gr.Error``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image

from diffae_app.imaging import load_image
from diffae_app.progress import Eta
from diffae_app.session import DEFAULT_QUALITY, QUALITY_PRESETS

from .errors import refuse

ProgressCallback = Callable[[int, int, str], None]


def preset(quality: str | None) -> Any:
    """The quality preset named by the radio (or the API's ``quality``): T_inv, T_render."""
    name = (quality or DEFAULT_QUALITY).strip().lower()
    if name not in QUALITY_PRESETS:
        raise refuse(f"unknown quality {quality!r}; use one of: {', '.join(QUALITY_PRESETS)}")
    return QUALITY_PRESETS[name]


def variation_seed(seed: float | None) -> int | None:
    """The variation seed box: below 0 (or empty) renders from the photo's own noise."""
    return None if seed is None or seed < 0 else int(seed)


def face_index(choice: Any, count: int) -> int:
    """'Face 2' -> 1 (the picker's labels count from 1)."""
    try:
        index = int(str(choice).split()[-1]) - 1
    except (ValueError, IndexError):
        raise refuse(f"unknown face {choice!r}") from None
    if not 0 <= index < max(1, count):
        raise refuse(f"there is no {choice} in this photo")
    return index


def face_labels(count: int) -> list[str]:
    """The face picker's choices for ``count`` faces ('Face 1', 'Face 2', ...)."""
    return [f"Face {i + 1}" for i in range(count)]


def load_photo(source: Any) -> Image.Image:
    """``imaging.load_image`` (upright 8-bit RGB), returned without metadata.

    The upright image still carries the file's EXIF orientation tag, so handing it to a
    function that calls ``load_image`` again would rotate it twice; a bare copy has no tag.
    """
    image = load_image(source)
    return Image.fromarray(np.asarray(image))


def file_path(item: Any) -> str:
    """A ``gr.File`` item (a path, or an object with ``.name``) as a path."""
    return item if isinstance(item, str) else str(getattr(item, "name", item))


def progress_callback(progress: Any, *, start: float = 0.0, span: float = 1.0) -> ProgressCallback:
    """Pipeline ``(step, total, message)`` -> a ``gr.Progress`` (or None: no-op); the bar's
    text gets the time left, from the pace of the steps so far."""
    if progress is None:
        return lambda step, total, message: None
    eta = Eta()

    def report(step: int, total: int, message: str) -> None:
        left = eta.text(step, total)
        desc = f"{message} · {left}" if left and step < total else message
        progress(start + span * step / max(1, total), desc=desc)

    return report


def optional_progress(
    progress: Any, *, start: float = 0.0, span: float = 1.0
) -> ProgressCallback | None:
    """:func:`progress_callback`, or None when there is no bar (the studio skips reporting)."""
    return None if progress is None else progress_callback(progress, start=start, span=span)
