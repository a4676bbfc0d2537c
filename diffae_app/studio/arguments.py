"""Checks of the per-request numbers (step counts, seeds, counts): one-line errors."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import StudioError
from ..session import DEFAULT_QUALITY, QUALITY_PRESETS

__all__ = ["check_seed", "check_steps", "is_whole", "steps_or_default"]


def is_whole(value: Any, *, numpy_ok: bool = False) -> bool:
    """An int (and, with ``numpy_ok``, a numpy integer); never a bool."""
    kinds = (int, np.integer) if numpy_ok else int
    return not isinstance(value, bool) and isinstance(value, kinds)


def check_steps(value: int, name: str) -> int:
    if not is_whole(value, numpy_ok=True) or value < 1:
        raise StudioError(f"{name} must be a positive whole number of steps, got {value!r}")
    if value > 1000:
        raise StudioError(
            f"{name} must be at most 1000 (the training schedule's length), got {value}"
        )
    return int(value)


def steps_or_default(T: int | None, kind: str) -> int:
    """``T`` checked, or the default quality preset's ``kind`` ("T_inv" or "T_render")."""
    if T is None:
        preset = QUALITY_PRESETS[DEFAULT_QUALITY]
        return preset.T_inv if kind == "T_inv" else preset.T_render
    return check_steps(T, kind)


def check_seed(seed: Any, *, optional: bool = False) -> None:
    """A generator seed: a non-negative int (or None where ``optional``)."""
    if optional and seed is None:
        return
    if not is_whole(seed) or seed < 0:
        allowed = " or None" if optional else ""
        raise StudioError(f"seed must be a non-negative whole number{allowed}, got {seed!r}")
