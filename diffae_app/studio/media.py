"""Writing frames out: animated GIFs, strips and contact-sheet grids of RGB images."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from ..errors import StudioError

__all__ = ["grid", "write_gif", "write_strip"]


def _check_frames(frames: Sequence[Image.Image]) -> list[Image.Image]:
    frames = [f.convert("RGB") for f in frames]
    if not frames:
        raise StudioError("no frames to write")
    if len({f.size for f in frames}) != 1:
        raise StudioError("all frames must have the same size")
    return frames


def write_gif(
    frames: Sequence[Image.Image],
    path: str | os.PathLike,
    *,
    frame_ms: int = 120,
    bounce: bool = False,
) -> Path:
    """Animated GIF of ``frames`` (looping forever); ``bounce`` plays back and forth."""
    frames = _check_frames(frames)
    if bounce and len(frames) > 2:
        frames = frames + frames[-2:0:-1]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(
        path,
        format="GIF",
        save_all=True,
        append_images=frames[1:],
        duration=max(20, int(frame_ms)),
        loop=0,
        disposal=1,
    )
    return path


def write_strip(
    frames: Sequence[Image.Image], path: str | os.PathLike | None = None
) -> Image.Image:
    """The frames side by side in one image (written as PNG/JPEG by suffix when ``path`` is given)."""
    frames = _check_frames(frames)
    strip = grid(frames, columns=len(frames))
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        strip.save(path)
    return strip


def grid(images: Sequence[Image.Image], columns: int | None = None) -> Image.Image:
    """Images in a grid, row by row (``columns`` default: about square)."""
    images = _check_frames(images)
    columns = columns or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    width, height = images[0].size
    sheet = Image.new("RGB", (width * columns, height * rows))
    for k, image in enumerate(images):
        sheet.paste(image, ((k % columns) * width, (k // columns) * height))
    return sheet
