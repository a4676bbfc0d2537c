"""Switching a session to another model from the model selector."""

from __future__ import annotations

from typing import Any

import gradio as gr

from .context import UiContext
from .errors import user_errors
from .models import describe
from .sliders import slider_updates
from .state import UserState
from .views import cleared_face

Outputs = dict[str, Any]


def on_load_model(
    ctx: UiContext, spec: str | None, mode: str, state: UserState, progress: Any = None
) -> Outputs:
    """Load ``spec`` for this session: a fresh start on it (no face, its sliders), or, when it
    cannot be loaded, one warning and the session kept as it was."""
    state = ctx.ensure_state(state)
    spec = (spec or "").strip() or ctx.models.default_spec
    if progress is not None:
        progress(0.2, desc=f"loading {spec}")
    try:
        with user_errors("loading the model"):
            studio = ctx.models.get(spec, owner=state.uid)
    except gr.Error as error:
        # Raising would mark every output of this event as failed (red badges over the
        # whole page) and leave the selector on a model that is not loaded. Say why once,
        # and keep the session on its model, face and edit, fully usable.
        gr.Warning(error.message)
        current = ctx.studio(state)
        return {
            "model_choice": gr.update(value=state.model or ctx.models.default_spec),
            "status": f"⚠️ {error.message.rstrip('.')}. This session keeps the model "
            f"**{current.model_id}**.",
        }
    state = UserState(
        uid=state.uid,
        cache=state.cache,
        model="" if spec == ctx.models.default_spec else spec,
        slots=ctx.bank.assign(studio.attribute_names),
    )
    dropped = ctx.bank.unplaced(state.slots, studio.attribute_names)
    if dropped:
        gr.Warning(f"no room for {len(dropped)} sliders: {', '.join(dropped)}")
    return {
        "state": state,
        "header": describe(studio, spec),
        "model_choice": gr.update(choices=ctx.models.choices_for(spec), value=spec),
        **cleared_face(),
        "status": f"Model **{studio.model_id}** loaded for this session; upload a photo.",
        **slider_updates(ctx, state, mode, {}),
    }
