"""The attribute sliders: their looks per mode, reading them into an edit, mode and Reset."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gradio as gr

from .context import UiContext
from .errors import user_errors
from .layout import (
    DEFAULT_STRENGTH_RANGE,
    DEFAULT_STRENGTH_STEP,
    GROUPS,
    attribute_label,
    slider_look,
    values_by_name,
)
from .state import UserState
from .views import unedited_outputs

Outputs = dict[str, Any]

MODES = ("strength", "target probability")
# Official units: 0.3 is a typical FFHQ edit. Attributes with a calibrated "full" strength
# (``evaluate --write``) get a range of their own (layout.strength_range); this is the rest's.
STRENGTH_RANGE = DEFAULT_STRENGTH_RANGE
STRENGTH_STEP = DEFAULT_STRENGTH_STEP
TARGET_STEP = 0.01
# Targets are solved in logit space: keep them off 0 and 1.
TARGET_CLAMP = (0.001, 0.999)
# A target slider counts as moved when it is this far from the face's own probability.
TARGET_TOLERANCE = 0.005


def probabilities(studio: Any, state: UserState) -> dict[str, float]:
    """The encoded face's attribute probabilities ({} before a face or without classifiers)."""
    if state.session is None or not (studio.attribute_names or state.custom):
        return {}
    return dict(studio.attributes(state.session, custom_attributes=state.custom))


def read_probabilities(studio: Any, state: UserState) -> dict[str, float]:
    """:func:`probabilities`, failures as toasts (for events that only read them)."""
    with user_errors("reading the attributes"):
        return probabilities(studio, state)


def _neutral(name: str | None, mode: str, before: dict[str, float]) -> float:
    if mode == MODES[1] and name is not None:
        return round(float(before.get(name, 0.5)), 2)
    return 0.0


def slider_updates(
    ctx: UiContext, state: UserState, mode: str, before: dict[str, float]
) -> Outputs:
    """Every slot: shown or hidden, its label, range and neutral value for ``mode``."""
    out: Outputs = {}
    target = mode == MODES[1]
    studio = ctx.studio(state)
    # Custom attributes are the session's own: no calibration, no measurements.
    custom = set(state.custom_names)
    full = {k: v for k, v in studio.full_strengths.items() if k not in custom}
    measured = {k: v for k, v in studio.edit_reliability.items() if k not in custom}
    for i, (slot, name) in enumerate(zip(ctx.bank.slots, state.slots, strict=True)):
        if name is None:
            out[f"slot{i}"] = gr.update(visible=False, value=0.0)
            continue
        look = slider_look(name, full.get(name), measured.get(name))
        out[f"slot{i}"] = gr.update(
            visible=True,
            label=look.label,
            minimum=0.0 if target else look.minimum,
            maximum=1.0 if target else look.maximum,
            step=TARGET_STEP if target else look.step,
            value=_neutral(name, mode, before),
            info=None if slot.name else name,
            elem_classes=list(look.classes),
        )
    out.update(_group_updates(ctx, state))
    return out


def _group_updates(ctx: UiContext, state: UserState) -> Outputs:
    """Each group's accordion (shown when it has a slider) and its lock choices (cleared)."""
    out: Outputs = {}
    visible = ctx.bank.visible_groups(state.slots)
    for group in GROUPS:
        names = [
            n
            for s, n in zip(ctx.bank.slots, state.slots, strict=True)
            if s.group == group and n is not None
        ]
        out[f"group:{group}"] = gr.update(visible=group in visible)
        out[f"locks:{group}"] = gr.update(
            choices=[(attribute_label(n), n) for n in names], value=[]
        )
    return out


def edit_request(
    ctx: UiContext,
    state: UserState,
    mode: str,
    locks: Sequence[str],
    values: Sequence[float | None],
) -> tuple[dict[str, float], dict[str, float], tuple[str, ...], dict[str, float]]:
    """(strengths, targets, locks, before) from the slider values of the visible slots.

    Locked attributes are held fixed, so their sliders are ignored.
    """
    studio = ctx.studio(state)
    locks = tuple(dict.fromkeys(n for n in locks if n in set(state.slots)))
    by_name = {k: v for k, v in values_by_name(state.slots, values).items() if k not in locks}
    before = read_probabilities(studio, state)
    if mode == MODES[1]:
        targets = {
            name: min(max(value, TARGET_CLAMP[0]), TARGET_CLAMP[1])
            for name, value in by_name.items()
            if abs(value - round(before.get(name, 0.5), 2)) > TARGET_TOLERANCE
        }
        return {}, targets, locks, before
    strengths = {name: value for name, value in by_name.items() if value != 0.0}
    return strengths, {}, locks, before


def on_mode(ctx: UiContext, mode: str, state: UserState) -> Outputs:
    """Strength <-> target-probability sliders: new ranges and neutral values."""
    state = ctx.ensure_state(state)
    return slider_updates(ctx, state, mode, read_probabilities(ctx.studio(state), state))


def on_reset(ctx: UiContext, mode: str, state: UserState) -> Outputs:
    """Every slider back to neutral, no locks, the edit view back to the reconstruction."""
    state = ctx.ensure_state(state)
    before = read_probabilities(ctx.studio(state), state)
    out = slider_updates(ctx, state, mode, before)
    out.update(unedited_outputs(state, before))
    out["status"] = (
        "Reset: sliders back to neutral; showing the unedited reconstruction."
        if state.session is not None
        else "Reset: sliders back to neutral."
    )
    return out
