"""Watching a render form: preview images of the current estimate, an ETA, cancellation.

Plain functions over the samplers' per-step callback (`diffusion.ddim.StepCallback`): nothing
here knows about Gradio or threads, so the CLI, the app and tests use the same pieces.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from PIL import Image

from .imaging import tensor_to_image

#: Receives the current estimate of the final image (the sampler's predicted x_0) as the
#: model-sized RGB crop, and (step, total): how many of the render's UNet calls are done.
PreviewCallback = Callable[[Image.Image, int, int], None]
#: Returns True when the work in flight should stop (e.g. a newer slider move replaced it).
CancelCheck = Callable[[], bool]

# The first preview comes after this many UNet calls: the estimate after one call from pure
# noise is a flat mean face; after two the face's layout is there.
FIRST_PREVIEW_CALL = 2
# About this many previews per render, so a long render does not spend its time encoding them.
PREVIEWS_PER_RENDER = 5


class Cancelled(Exception):
    """The render or inversion was stopped by its cancel check before it finished."""


def preview_calls(num_steps: int) -> frozenset[int]:
    """After which of a `num_steps`-call render a preview is shown (1-based call numbers).

    The first after FIRST_PREVIEW_CALL calls, then every max(2, num_steps // 5); never after
    the last call (the final image is the result itself). 10 steps: 2, 4, 6, 8; 20 steps:
    2, 6, 10, 14, 18.
    """
    every = max(2, num_steps // PREVIEWS_PER_RENDER)
    return frozenset(range(FIRST_PREVIEW_CALL, num_steps, every))


def step_callback(
    num_steps: int,
    *,
    on_step: Callable[[dict[str, Any]], None] | None = None,
    preview: PreviewCallback | None = None,
    cancel: CancelCheck | None = None,
) -> Callable[[dict[str, Any]], None] | None:
    """One sampler callback doing, after each step: `on_step` (progress), a preview of the
    first image's predicted x_0 at `preview_calls(num_steps)`, then the cancel check, which
    raises `Cancelled` so the sampler loop stops before its next UNet call. None when there
    is nothing to do (the samplers then skip the callback altogether)."""
    if on_step is None and preview is None and cancel is None:
        return None
    shown = preview_calls(num_steps)

    def callback(info: dict[str, Any]) -> None:
        if on_step is not None:
            on_step(info)
        done = info["i"] + 1
        if preview is not None and done in shown:
            preview(estimate_image(info["pred_x0"]), done, num_steps)
        if cancel is not None and cancel():
            raise Cancelled(f"stopped after {done} of {num_steps} steps")

    return callback


def estimate_image(pred_x0: torch.Tensor) -> Image.Image:
    """The first image of a (B, 3, S, S) estimate in [-1, 1] as an RGB crop."""
    return tensor_to_image(pred_x0[:1])


class Eta:
    """Remaining time of a run of `total` equal steps, from the pace of the steps so far."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.start = clock()

    def seconds_left(self, done: int, total: int) -> float | None:
        """None until a step is done; then elapsed / done * (total - done)."""
        if done <= 0:
            return None
        return (self.clock() - self.start) / done * max(0, total - done)

    def text(self, done: int, total: int) -> str:
        """e.g. 'about 12 s left' ('' until the first step is done)."""
        left = self.seconds_left(done, total)
        if left is None:
            return ""
        if left < 60:
            return f"about {left:.0f} s left"
        return f"about {int(left // 60)} min {left % 60:.0f} s left"


class PhaseProgress:
    """Turns per-phase step counts (detect, encode, invert, render...) into one
    ``progress(step, total, message)`` stream with a fixed ``total``
    (``session.ProgressCallback``); ``callback`` None makes every call a no-op."""

    def __init__(self, callback: Callable[[int, int, str], None] | None, total: int) -> None:
        self.callback = callback
        self.total = max(1, total)
        self.done = 0

    def advance(self, message: str, count: int = 1) -> None:
        self.done = min(self.total, self.done + count)
        if self.callback is not None:
            self.callback(self.done, self.total, message)

    def ddim(self, message: str) -> Callable[[dict[str, Any]], None] | None:
        """A sampler callback advancing one step per sampler step (None without a callback)."""
        if self.callback is None:
            return None
        return lambda info: self.advance(message)

    def finish(self, message: str) -> None:
        if self.done < self.total:
            self.advance(message, self.total - self.done)
