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

from .context import UiContext
from .custom import add_classifiers
from .errors import refuse, user_errors
from .layout import attribute_label
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


def on_show(ctx: UiContext, state: UserState) -> Any:
    """The picker's choices for the model this session uses (refreshed when the tab opens)."""
    studio = ctx.studio(ctx.ensure_state(state))
    return gr.update(choices=saved_choices(studio), value=[])


def on_add(ctx: UiContext, picked: Sequence[str] | None, mode: str, state: UserState) -> Outputs:
    """Add the picked saved attributes to this session's sliders (group 'Custom')."""
    state = ctx.ensure_state(state)
    studio = ctx.studio(state)
    listed = {path for _, path in saved_choices(studio)}
    picked = [p for p in (picked or []) if p]
    if not picked:
        raise refuse("pick one or more saved attributes first")
    if any(p not in listed for p in picked):
        raise refuse("that attribute is not among the saved ones for this model")
    with user_errors("loading the saved attributes"):
        loaded = [AttributeClassifier.load(Path(p)) for p in picked]
    added = [n for c in loaded for n in c.attribute_names]
    taken = set(studio.attribute_names) & set(added)
    if taken:
        raise refuse(f"the model already has a slider named {', '.join(sorted(taken))}")
    return {
        **add_classifiers(ctx, studio, state, loaded, mode),
        "custom_status": "Added "
        + ", ".join(f"**{attribute_label(n)}**" for n in added)
        + " to the Edit tab (group 'Custom') for this session.",
    }
