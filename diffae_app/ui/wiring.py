"""Events of the studio's Blocks: which handler runs on which trigger, with which inputs and
outputs. One function per flow; the API-only endpoints are wired in ``api.py``.

Handlers return dicts keyed by component *names*; :func:`event` maps them onto the
components an event lists (and refuses names it does not list: a programming error).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gradio as gr

from .layout import GROUPS, SEARCH_JS, SliderBank
from .runtime import gpu

if TYPE_CHECKING:  # the handlers import api.py, which imports this module
    from .handlers import Handlers

PRIVATE = {"api_visibility": "private"}


class Components(dict[str, Any]):
    """The app's components by name ('crop', 'slot3', 'locks:hair'...)."""

    def pick(self, *keys: str) -> list[Any]:
        return [self[k] for k in keys]


@dataclass(frozen=True)
class Event:
    """The outputs of one event and the map from a handler's dict onto them."""

    components: Components
    keys: tuple[str, ...]

    @property
    def outputs(self) -> list[Any]:
        return self.components.pick(*self.keys)

    def map(self, result: dict[str, Any]) -> dict:
        unknown = set(result) - set(self.keys)
        if unknown:  # a programming error: the event does not list these outputs
            raise KeyError(f"handler returned outputs not wired to this event: {sorted(unknown)}")
        return {self.components[k]: v for k, v in result.items()}


def event(c: Components, keys: Sequence[str]) -> Event:
    return Event(c, tuple(keys))


def model_click(
    c: Components,
    button: str,
    fn: Any,
    inputs: Sequence[str],
    outputs: Event,
    *,
    api_name: str | None = None,
    **options: Any,
) -> Any:
    """A button whose handler uses a model: it queues in the one "model" lane (one model
    call at a time), and it is private unless it gets an ``api_name``."""
    visibility = {"api_name": api_name} if api_name else PRIVATE
    return c[button].click(
        fn,
        inputs=c.pick(*inputs),
        outputs=outputs.outputs,
        concurrency_id="model",
        **visibility,
        **options,
    )


@dataclass(frozen=True)
class Keys:
    """Names of the component groups several events update."""

    slots: tuple[str, ...]
    locks: tuple[str, ...]
    sliders: tuple[str, ...]  # slots, group accordions, lock boxes
    results: tuple[str, ...]  # the edit view and its downloads
    session: tuple[str, ...]  # everything a newly encoded face updates

    @classmethod
    def for_bank(cls, bank: SliderBank) -> Keys:
        slots = tuple(f"slot{i}" for i in range(len(bank)))
        locks = tuple(f"locks:{g}" for g in GROUPS)
        sliders = (*slots, *(f"group:{g}" for g in GROUPS), *locks)
        results = ("edited_crop", "compare", "dl_png", "dl_crop", "dl_recipe")
        session = (
            "state", "crop", "recon", "quality_md", "chart", "status", "dl_encoding",
            "faces_view", "face_pick", *results, *sliders,
        )  # fmt: skip
        return cls(slots, locks, sliders, results, session)


def wire(c: Components, h: Handlers, bank: SliderBank) -> None:
    """Every event of the app but the API-only endpoints."""
    keys = Keys.for_bank(bank)
    render_event = wire_render(c, h, keys)
    wire_photo(c, h, keys, render_event)
    wire_slider_controls(c, h, keys, render_event)
    wire_model_switch(c, h, keys, render_event)
    wire_random_faces(c, h, keys)
    wire_interpolation(c, h)
    wire_custom_attributes(c, h, keys)


def wire_render(c: Components, h: Handlers, keys: Keys) -> Any:
    """ONE always_last listener for every slider release, lock, number box and the button, so
    a burst of moves renders once with the latest values; returns it (others cancel it)."""
    render = event(
        c, ["edited_crop", "compare", "chart", "status", "dl_png", "dl_crop", "dl_recipe"]
    )
    n_groups = len(GROUPS)

    @gpu()
    def on_render(state, mode, quality, seed, paste, *rest, progress=gr.Progress()):  # noqa: B008
        locks = [name for group in rest[:n_groups] for name in (group or [])]
        values = rest[n_groups:]
        for out in h.on_render(state, mode, quality, seed, locks, values, progress, paste=paste):
            yield render.map(out)

    render_event = gr.on(
        triggers=[
            *(c[k].release for k in keys.slots),
            *(c[k].input for k in keys.locks),
            c["render_btn"].click,
            c["seed"].submit,
            c["paste"].input,
        ],
        fn=on_render,
        inputs=c.pick("state", "mode", "quality", "seed", "paste", *keys.locks, *keys.slots),
        outputs=render.outputs,
        trigger_mode="always_last",
        # The bar (step count and ETA) sits on the status line, so the forming face stays
        # visible in the image while previews stream in.
        show_progress="full",
        show_progress_on=[c["status"]],
        concurrency_id="model",
        **PRIVATE,
    )
    # A slider starting to move makes the render in flight stale: it stops at its next step
    # (not queued, so it runs while that render holds the model), and the release renders.
    gr.on(
        triggers=[*(c[k].input for k in keys.slots), c["render_btn"].click],
        fn=h.on_slider_moving,
        inputs=[c["state"]],
        outputs=None,
        queue=False,
        show_progress="hidden",
        **PRIVATE,
    )
    return render_event


def wire_photo(c: Components, h: Handlers, keys: Keys, render_event: Any) -> None:
    """Encoding once per photo (upload, webcam and example clicks all fire ``change``), per
    picked face and per quality preset; each cancels a render in flight."""
    encoded = event(c, keys.session)

    @gpu()
    def on_photo(photo, aligned, quality, mode, state, progress=gr.Progress()):  # noqa: B008
        return encoded.map(h.on_photo(photo, aligned, quality, mode, state, progress))

    @gpu()
    def on_face_or_quality(choice, quality, mode, state, progress=gr.Progress()):  # noqa: B008
        # One handler for both: it encodes the face the picker shows at the quality the radio
        # shows, whichever of the two changed (see the listener below).
        return encoded.map(h.on_face_or_quality(quality, mode, state, progress, face_choice=choice))

    photo_event = {
        "outputs": encoded.outputs,
        "trigger_mode": "always_last",
        "cancels": [render_event],
        "show_progress_on": [c["crop"], c["recon"]],
        "concurrency_id": "model",
        **PRIVATE,
    }
    photo_inputs = c.pick("photo", "aligned", "quality", "mode", "state")
    c["photo"].change(on_photo, inputs=photo_inputs, **photo_event)
    c["aligned"].input(on_photo, inputs=photo_inputs, **photo_event)
    # Face picks and quality changes share ONE always_last listener: two listeners could run
    # at once and the slower one (e.g. face 1 at the new quality, started before the pick
    # reached the state) would overwrite the newer choice. One listener runs them in turn,
    # and each run reads both controls as they are when it starts.
    gr.on(
        triggers=[c["face_pick"].input, c["quality"].input],
        fn=on_face_or_quality,
        inputs=c.pick("face_pick", "quality", "mode", "state"),
        **photo_event,
    )


def wire_slider_controls(c: Components, h: Handlers, keys: Keys, render_event: Any) -> None:
    """Slider mode, Reset and the slider search box."""
    mode = event(c, keys.sliders)
    c["mode"].input(
        lambda mode_value, state: mode.map(h.on_mode(mode_value, state)),
        inputs=c.pick("mode", "state"),
        outputs=mode.outputs,
        show_progress="hidden",
        **PRIVATE,
    )
    reset = event(c, [*keys.sliders, *keys.results, "chart", "status"])
    c["reset_btn"].click(
        lambda mode_value, state: reset.map(h.on_reset(mode_value, state)),
        inputs=c.pick("mode", "state"),
        outputs=reset.outputs,
        cancels=[render_event],
        show_progress="hidden",
        **PRIVATE,
    )
    # `change`, not `input`: Gradio 6 fires a Textbox's input event for typed characters but
    # not for deletions, so clearing the box never reached the filter (measured in Chromium).
    c["search"].change(None, inputs=[c["search"]], js=SEARCH_JS, **PRIVATE)


def wire_model_switch(c: Components, h: Handlers, keys: Keys, render_event: Any) -> None:
    """The model selector: the session moves to another model."""
    loaded = event(c, [*keys.session, "header", "model_choice"])

    def on_load_model(spec, mode, state, progress=gr.Progress()):  # noqa: B008
        return loaded.map(h.on_load_model(spec, mode, state, progress))

    model_click(
        c, "model_load", on_load_model, ["model_choice", "mode", "state"], loaded,
        cancels=[render_event],
    )  # fmt: skip


def wire_random_faces(c: Components, h: Handlers, keys: Keys) -> None:
    """``/sample`` (public), picking a face in the gallery and sending it to the Edit tab."""
    drawn = event(c, ["gallery", "state", "sample_status"])

    @gpu()
    def sample(seed, count, quality, state, progress=gr.Progress()):  # noqa: B008
        """Random faces from the latent DPM (seed, how many, quality preset)."""
        return drawn.map(h.on_sample(seed, count, quality, state, progress))

    model_click(
        c, "sample_btn", sample, ["sample_seed", "sample_count", "quality", "state"], drawn,
        api_name="sample",
    )  # fmt: skip
    picked = event(c, ["state"])

    def on_select(state, evt: gr.SelectData):
        return picked.map(h.on_sample_select(evt.index, state))

    c["gallery"].select(on_select, inputs=[c["state"]], outputs=picked.outputs, **PRIVATE)
    sent = event(c, [*keys.session, "tabs", "photo"])

    @gpu()
    def send_to_edit(quality, mode, state, progress=gr.Progress()):  # noqa: B008
        return sent.map(h.on_send_to_edit(quality, mode, state, progress))

    model_click(c, "send_btn", send_to_edit, ["quality", "mode", "state"], sent)


def wire_interpolation(c: Components, h: Handlers) -> None:
    """``/interpolate`` (public): a strip and a GIF between two faces."""
    morphed = event(c, ["interp_strip", "interp_gif"])

    @gpu(duration=120)
    def interpolate(photo_a, photo_b, frames, quality, state, progress=gr.Progress()):  # noqa: B008
        """Morph between the faces of two photos: a strip image and a GIF."""
        return morphed.map(h.on_interpolate(photo_a, photo_b, frames, quality, state, progress))

    model_click(
        c, "interp_btn", interpolate,
        ["interp_a", "interp_b", "interp_frames", "quality", "state"], morphed,
        api_name="interpolate",
    )  # fmt: skip


def wire_custom_attributes(c: Components, h: Handlers, keys: Keys) -> None:
    """Training a custom attribute, and adding saved ones (``classifiers/``) to the sliders."""
    trained = event(c, ["state", "custom_status", "custom_file", "chart", *keys.sliders])

    @gpu()
    def custom(pos, neg, name, aligned, mode, state, progress=gr.Progress()):  # noqa: B008
        return trained.map(h.on_custom(pos, neg, name, aligned, mode, state, progress))

    model_click(
        c, "custom_btn", custom,
        ["custom_pos", "custom_neg", "custom_name", "custom_aligned", "mode", "state"], trained,
    )  # fmt: skip
    # Saved attributes: listed for the session's model when the tab opens.
    c["custom_tab"].select(
        h.on_show_saved,
        inputs=[c["state"]],
        outputs=[c["saved_pick"]],
        show_progress="hidden",
        **PRIVATE,
    )
    added = event(c, ["state", "custom_status", "chart", *keys.sliders])
    model_click(
        c, "saved_btn", lambda picked, mode, state: added.map(h.on_add_saved(picked, mode, state)),
        ["saved_pick", "mode", "state"], added,
    )  # fmt: skip
