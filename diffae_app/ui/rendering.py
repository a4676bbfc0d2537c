"""Rendering an edit: slider releases stream a forming face, then the final render.

A newer render of this user, or a slider starting to move, stops the one in flight at its next
step (``streaming.LatestRender``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from diffae_app.paste import DEFAULT_PASTE
from diffae_app.progress import Cancelled, Eta

from .context import UiContext
from .errors import refuse, user_errors
from .files import write_result
from .layout import probability_chart_html
from .readouts import edit_summary
from .requests import ProgressCallback, preset, progress_callback, variation_seed
from .sliders import edit_request
from .state import UserState
from .streaming import stream
from .views import edited_outputs

Outputs = dict[str, Any]


def render(
    studio: Any,
    state: UserState,
    strengths: dict,
    targets: dict,
    locks: tuple,
    T_render: int,
    seed: int | None,
    *,
    paste: str | None = DEFAULT_PASTE,
    progress: ProgressCallback | None = None,
    preview: Any = None,
    cancel: Any = None,
) -> Any:
    """One studio render of the session's face. ``progress`` is a raw ``(step, total,
    message)`` callback; ``preview``/``cancel`` go to ``Studio.render``."""
    with user_errors("rendering the edit"):
        return studio.render(
            state.session,
            strengths,
            locks=locks,
            targets=targets,
            T_render=T_render,
            seed=seed,
            custom_attributes=state.custom,
            paste=paste or DEFAULT_PASTE,
            measure=True,
            progress=progress,
            preview=preview,
            cancel=cancel,
        )


def on_render(
    ctx: UiContext,
    state: UserState,
    mode: str,
    quality: str | None,
    seed: float | None,
    locks: Sequence[str],
    values: Sequence[float | None],
    progress: Any = None,
    *,
    paste: str = DEFAULT_PASTE,
) -> Iterator[Outputs]:
    """Slider release / number box / Render button: the face forming (the sampler's
    current estimate every few steps, with step count and ETA), then the final render.

    A newer render of this user, or a slider starting to move (:func:`on_slider_moving`),
    stops this one at its next step; it then ends without touching the page. ``paste``
    ("change" or "render") decides the edited face shown, the before/after photo and both
    downloads.
    """
    state = ctx.ensure_state(state)
    if state.session is None:
        raise refuse("no face yet: upload a photo or pick an example first")
    stale = state.renders.take()
    studio = ctx.studio(state)
    strengths, targets, locks, before = edit_request(ctx, state, mode, locks, values)
    seed_value = variation_seed(seed)
    T_render = preset(quality).T_render
    report = progress_callback(progress)
    eta = Eta()

    def work(*, preview: Any, progress: Any, cancel: Any) -> Any:
        return render(
            studio, state, strengths, targets, locks, T_render, seed_value,
            paste=paste, progress=progress, preview=preview, cancel=cancel,
        )  # fmt: skip

    result = None
    try:
        for kind, value in stream(work, stale=stale):
            if kind == "progress":
                step, total, message = value
                report(step, total, f"{message} {step}/{total}")
            elif kind == "preview":
                image, step, total = value
                yield {
                    "edited_crop": image,
                    "status": f"Rendering: step {step} of {total}, {eta.text(step, total)}…",
                }
            else:
                result = value
    except Cancelled:
        return  # a newer edit replaced this one; it renders next
    chart = probability_chart_html(
        before,
        dict(result.probabilities_after),
        asked=dict(result.probabilities_asked),
        highlight=[*strengths, *targets],
    )
    yield {
        **edited_outputs(state, result, write_result(state, result), chart),
        "status": edit_summary(result, targets, locks, T_render),
    }


def on_slider_moving(state: UserState) -> None:
    """A slider started moving: the render in flight is already out of date, stop it."""
    if isinstance(state, UserState):
        state.renders.supersede()
