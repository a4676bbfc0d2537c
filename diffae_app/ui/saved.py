"""Saved attribute classifiers (the repository's ``classifiers/`` folder) in the app.

The Custom attribute tab lists the standalone artefacts fitted to the model the session uses
(matched by the fit fingerprint each artefact records) and adds the picked ones to the
session's sliders. Only files the server itself listed can be loaded: a path sent by a
browser is checked against the listing, never opened as given.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gradio as gr

from diffae_app.classifier import AttributeClassifier, find_classifiers, read_header

from .handlers import Handlers, user_errors
from .layout import attribute_label, probability_chart_html
from .state import UserState

Outputs = dict[str, Any]


def saved_choices(studio: Any) -> list[tuple[str, str]]:
    """``(label, path)`` of every artefact in ``classifiers/`` that fits ``studio``'s model."""
    choices = []
    for path in find_classifiers(getattr(studio, "fit_fingerprint", "")):
        header = read_header(path) or {}
        names = header.get("attribute_names", "[]").strip("[]").replace('"', "")
        choices.append((f"{names} ({path.name})", str(path)))
    return choices


def on_show(handlers: Handlers, state: UserState) -> Any:
    """The picker's choices for the model this session uses (refreshed when the tab opens)."""
    studio = handlers.studio(handlers._state(state))
    return gr.update(choices=saved_choices(studio), value=[])


def on_add(
    handlers: Handlers, picked: Sequence[str] | None, mode: str, state: UserState
) -> Outputs:
    """Add the picked saved attributes to this session's sliders (group 'Custom')."""
    state = handlers._state(state)
    studio = handlers.studio(state)
    listed = {path for _, path in saved_choices(studio)}
    picked = [p for p in (picked or []) if p]
    if not picked:
        raise gr.Error("pick one or more saved attributes first", print_exception=False)
    unknown = [p for p in picked if p not in listed]
    if unknown:
        raise gr.Error(
            "that attribute is not among the saved ones for this model", print_exception=False
        )
    with user_errors("loading the saved attributes"):
        loaded = [AttributeClassifier.load(Path(p)) for p in picked]
    added = [n for c in loaded for n in c.attribute_names]
    taken = set(studio.attribute_names) & set(added)
    if taken:
        raise gr.Error(
            f"the model already has a slider named {', '.join(sorted(taken))}",
            print_exception=False,
        )
    capacity = max(1, len(handlers.bank.group_indices("custom")))
    custom = tuple(c for c in state.custom if not set(c.attribute_names) & set(added)) + tuple(
        loaded
    )
    custom = custom[-capacity:]
    state = state.replace(
        custom=custom,
        slots=handlers.bank.assign(
            studio.attribute_names, tuple(n for c in custom for n in c.attribute_names)
        ),
    )
    out: Outputs = {
        "state": state,
        "custom_status": "Added "
        + ", ".join(f"**{attribute_label(n)}**" for n in added)
        + " to the Edit tab (group 'Custom') for this session.",
    }
    with user_errors("reading the attributes"):
        before = handlers._before(studio, state)
    out.update(handlers.slider_updates(state, mode, before))
    if state.session is not None:
        out["chart"] = probability_chart_html(before)
    return out
