"""Custom attributes: a slider trained in the session from example photos, and the shared step
that adds classifiers (trained here or saved in ``classifiers/``) to a session's sliders."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gradio as gr

from diffae_app.editing import MIN_CUSTOM_EXAMPLES

from .context import UiContext
from .errors import refuse, user_errors
from .files import custom_attribute_path, display_name
from .layout import probability_chart_html
from .readouts import custom_status
from .requests import file_path, load_photo
from .sliders import read_probabilities, slider_updates
from .state import UserState

Outputs = dict[str, Any]


def add_classifiers(
    ctx: UiContext, studio: Any, state: UserState, added: Sequence[Any], mode: str
) -> Outputs:
    """``added`` classifiers join the session's custom ones (replacing any with the same
    attribute names; the oldest go when the Custom group is full): the new state, the sliders
    and, with a face encoded, its probabilities."""
    names = {n for c in added for n in c.attribute_names}
    capacity = max(1, len(ctx.bank.group_indices("custom")))
    kept = tuple(c for c in state.custom if not set(c.attribute_names) & names)
    custom = (*kept, *added)[-capacity:]
    state = state.replace(
        custom=custom,
        slots=ctx.bank.assign(
            studio.attribute_names, tuple(n for c in custom for n in c.attribute_names)
        ),
    )
    before = read_probabilities(studio, state)
    out: Outputs = {"state": state, **slider_updates(ctx, state, mode, before)}
    if state.session is not None:
        out["chart"] = probability_chart_html(before)
    return out


def on_custom(
    ctx: UiContext,
    positives: Sequence[Any] | None,
    negatives: Sequence[Any] | None,
    name: str | None,
    aligned: bool,
    mode: str,
    state: UserState,
    progress: Any = None,
) -> Outputs:
    """Train a new attribute from photos with and without it; it becomes a Custom slider."""
    state = ctx.ensure_state(state)
    studio = ctx.studio(state)
    name = (name or "").strip()
    if not name:
        raise refuse("give the new attribute a name")
    pos = [file_path(f) for f in positives or []]
    neg = [file_path(f) for f in negatives or []]
    if progress is not None:
        progress(0.1, desc=f"encoding {len(pos) + len(neg)} example faces")
    pos_codes, skipped = example_codes(studio, pos, bool(aligned), "with")
    neg_codes, skipped_neg = example_codes(studio, neg, bool(aligned), "without")
    skipped += skipped_neg
    for kind, codes in (("with", pos_codes), ("without", neg_codes)):
        if len(codes) < MIN_CUSTOM_EXAMPLES:
            raise refuse(
                f"need at least {MIN_CUSTOM_EXAMPLES} usable photos {kind} the attribute, "
                f"got {len(codes)}" + (f" (skipped {'; '.join(skipped)})" if skipped else "")
            )
    if skipped:
        gr.Warning(f"skipped {len(skipped)} unusable photo(s): {'; '.join(skipped)}")
    with user_errors("training the custom attribute"):
        classifier = studio.custom_attribute(pos_codes, neg_codes, name)
        path = custom_attribute_path(state, name)
        classifier.save(path)
    accuracy = classifier.metrics.get(name, {}).get("train_accuracy")
    return {
        **add_classifiers(ctx, studio, state, [classifier], mode),
        "custom_status": custom_status(name, len(pos_codes), len(neg_codes), skipped, accuracy),
        "custom_file": str(path),
    }


def example_codes(
    studio: Any, paths: Sequence[str], aligned: bool, kind: str
) -> tuple[list[Any], list[str]]:
    """z_sem of each usable example, and 'name: why' for each skipped one."""
    codes, skipped = [], []
    for path in paths:
        try:
            with user_errors(f"encoding an example {kind} the attribute"):
                codes.append(studio.semantic_codes([load_photo(path)], aligned=aligned)[0])
        except gr.Error as error:
            skipped.append(f"{display_name(path)} ({error.message})")
    return codes, skipped
