"""The studio's Gradio Blocks: layout and wiring only (handlers in ``handlers.py``).

    demo = build_demo(registry)          # registry: ui.models.ModelRegistry
    demo.queue(**settings.queue_kwargs()).launch(**settings.launch_kwargs())

Events and their speed rules:

* encoding runs once per photo, on ``Image.change`` (uploads, webcam, clicks on an example,
  which do not fire ``upload``), with a progress bar; a new photo cancels a running render;
* every slider release, the number boxes (release fires on blur), the lock toggles and the
  Render button go through ONE ``gr.on(..., trigger_mode="always_last")``, so a burst of moves
  renders once, with the latest values; the handler yields a low-step preview, then the final
  render;
* named API endpoints: ``/encode``, ``/edit``, ``/attributes`` (on hidden components, sharing
  the caller's session state), ``/interpolate`` and ``/sample``; every other event is private.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gradio as gr

from diffae_app.classifier import CELEBA_ATTRIBUTES
from diffae_app.data.synthfaces import ATTRIBUTES as SYNTHFACES_ATTRIBUTES
from diffae_app.paste import DEFAULT_PASTE
from diffae_app.session import DEFAULT_QUALITY, QUALITY_PRESETS

from . import saved
from .components import PhotoInput
from .examples import real_photo_examples, shipped_examples
from .handlers import MODES, Handlers
from .layout import (
    CSS,
    GROUP_TITLES,
    GROUPS,
    SEARCH_JS,
    SliderBank,
    attribute_label,
    slider_look,
)
from .models import ModelRegistry, describe
from .runtime import Settings, gpu
from .state import UserState, delete_outputs

TITLE = "DiffAE Studio"
IMAGE_TYPES = ["image"]

#: ``launch()`` arguments that style the page (Gradio 6 takes css/theme in launch, not Blocks).
CSS_AND_THEME: dict[str, Any] = {"css": CSS}


def _quality_choices() -> list[tuple[str, str]]:
    return [
        (f"{name} (T_inv {p.T_inv}, T_render {p.T_render})", name)
        for name, p in QUALITY_PRESETS.items()
    ]


def build_demo(models: ModelRegistry, settings: Settings | None = None) -> gr.Blocks:
    """The whole app for a model registry (the default model is already loaded)."""
    settings = settings or Settings.from_env()
    studio = models.default
    bank = SliderBank([*studio.attribute_names, *SYNTHFACES_ATTRIBUTES, *CELEBA_ATTRIBUTES])
    handlers = Handlers(models, bank)
    initial = handlers.new_state()
    examples = [str(p) for p in shipped_examples()] + [str(p) for p in real_photo_examples()]

    with gr.Blocks(
        title=TITLE,
        analytics_enabled=False,
        delete_cache=(settings.cache_every, settings.cache_age),
    ) as demo:
        c: dict[str, Any] = {}

        def fresh_state() -> Any:  # a function (deep-copied as itself), called per session
            return handlers.new_state()

        def forget(state: Any) -> None:  # the session expired: drop all of it
            delete_outputs(state)
            if isinstance(state, UserState):
                models.release(state.uid)

        c["state"] = gr.State(
            fresh_state,
            time_to_live=settings.session_ttl,
            delete_callback=forget,
        )
        gr.Markdown(f"# {TITLE}\nEdit faces with Diffusion Autoencoders: upload, slide, download.")
        c["header"] = gr.Markdown(
            describe(studio, models.default_spec, models.notice), elem_id="studio-header"
        )
        with gr.Accordion("Model", open=False, elem_id="model-accordion"):
            with gr.Row():
                c["model_choice"] = gr.Dropdown(
                    choices=list(models.choices),
                    value=models.default_spec,
                    allow_custom_value=models.allow_custom,
                    label="Model: 'default' (bundled), a bundle folder, an official checkpoints "
                    "folder or .ckpt, or a Hub repo id"
                    if models.allow_custom
                    else "Model (the models this server offers)",
                    elem_id="model-choice",
                    scale=4,
                )
                c["model_load"] = gr.Button("Load for this session", elem_id="model-load", scale=1)

        with gr.Tabs(selected="edit") as tabs:
            c["tabs"] = tabs
            with gr.Tab("Edit", id="edit", elem_id="tab-edit"):
                _edit_tab(c, bank, initial, examples, studio)
            with gr.Tab("Interpolate", id="interpolate", elem_id="tab-interpolate"):
                _interpolate_tab(c)
            with gr.Tab("Random faces", id="random", elem_id="tab-random"):
                _random_tab(c, studio)
            with gr.Tab("Custom attribute", id="custom", elem_id="tab-custom") as custom_tab:
                c["custom_tab"] = custom_tab
                _custom_tab(c, studio)
        _api_components(c)
        _wire(c, handlers, bank)
    demo.studio_models = models  # for tests and app.py
    return demo


# --------------------------------------------------------------------------- layout


def _edit_tab(
    c: dict[str, Any], bank: SliderBank, initial: Any, examples: Sequence[str], studio: Any
) -> None:
    """Three columns: the photo and its encoding | the edit and downloads | the sliders."""
    with gr.Row(equal_height=False):
        with gr.Column(scale=4, min_width=300):
            _input_column(c, examples)
        with gr.Column(scale=4, min_width=300):
            _result_column(c)
        with gr.Column(scale=4, min_width=300):
            _slider_column(c, bank, initial, studio)


def _input_column(c: dict[str, Any], examples: Sequence[str]) -> None:
    c["photo"] = PhotoInput(
        type="filepath",
        label="Photo (upload, webcam or paste)",
        sources=["upload", "webcam", "clipboard"],
        elem_id="photo",
        height=280,
    )
    if examples:
        gr.Examples(
            examples=[[p] for p in examples],
            inputs=[c["photo"]],
            label="Examples: click a face",
            cache_examples=False,
            examples_per_page=12,
            elem_id="examples",
        )
    with gr.Group():
        c["faces_view"] = gr.AnnotatedImage(
            label="Faces in the photo", visible=False, elem_id="faces-view", height=240
        )
        c["face_pick"] = gr.Radio([], label="Face to edit", visible=False, elem_id="face-pick")
    with gr.Row():
        c["crop"] = gr.Image(
            label="Aligned face",
            format="png",
            interactive=False,
            elem_id="aligned-crop",
            height=170,
            buttons=["download"],
        )
        c["recon"] = gr.Image(
            label="Reconstruction",
            format="png",
            interactive=False,
            elem_id="reconstruction",
            height=170,
            buttons=["download"],
        )
    c["quality_md"] = gr.Markdown("", elem_id="quality")
    c["quality"] = gr.Radio(
        _quality_choices(), value=DEFAULT_QUALITY, label="Quality / speed", elem_id="quality-preset"
    )
    c["aligned"] = gr.Checkbox(
        False,
        label="My image is already an aligned face crop (skip face detection)",
        elem_id="aligned-input",
    )


def _result_column(c: dict[str, Any]) -> None:
    c["edited_crop"] = gr.Image(
        label="Edited face",
        format="png",
        interactive=False,
        elem_id="edited-crop",
        height=240,
        buttons=["download", "fullscreen"],
    )
    c["status"] = gr.Markdown("Upload a photo or click an example.", elem_id="edit-status")
    c["compare"] = gr.ImageSlider(
        label="Before / after (full photo)",
        interactive=False,
        elem_id="compare",
        type="filepath",
        format="png",
        height=300,
        buttons=["fullscreen"],
    )
    c["paste"] = gr.Radio(
        [("change only (keeps the photo's detail)", "change"), ("whole render", "render")],
        value=DEFAULT_PASTE,
        label="Paste back",
        elem_id="paste-mode",
        info="change: the photo plus what the edit changed, at the photo's resolution; "
        "whole render: the model's face (its resolution, no ghosts of removed content)",
    )
    with gr.Row():
        c["dl_png"] = gr.DownloadButton(
            "Full photo (PNG)", interactive=False, elem_id="download-png", size="sm"
        )
        c["dl_crop"] = gr.DownloadButton(
            "Edited crop (PNG)", interactive=False, elem_id="download-crop", size="sm"
        )
    with gr.Row():
        c["dl_recipe"] = gr.DownloadButton(
            "Edit recipe (JSON)", interactive=False, elem_id="download-recipe", size="sm"
        )
        c["dl_encoding"] = gr.DownloadButton(
            "Encoded face", interactive=False, elem_id="download-encoding", size="sm"
        )
    c["chart"] = gr.HTML(
        "<div class='prob-chart prob-empty'>Attribute probabilities appear here.</div>",
        label="Attribute probabilities (before / after)",
        elem_id="prob-chart",
    )


def _slider_column(c: dict[str, Any], bank: SliderBank, initial: Any, studio: Any) -> None:
    c["mode"] = gr.Radio(
        list(MODES),
        value=MODES[0],
        label="Sliders set",
        elem_id="slider-mode",
        info=(
            "strength: how far to move (each slider spans about 1.5x the strength that "
            "makes its attribute show; -2…2 where none is calibrated); target probability: "
            "where to go (0…1)"
        ),
    )
    with gr.Row():
        c["render_btn"] = gr.Button("Render", variant="primary", elem_id="render-btn")
        c["reset_btn"] = gr.Button("Reset", elem_id="reset-btn")
    c["search"] = gr.Textbox(
        placeholder="Filter sliders, e.g. hair",
        show_label=False,
        elem_id="slider-search",
        container=False,
    )
    slot_map = initial.slots
    for group in GROUPS:
        indices = bank.group_indices(group)
        visible = any(slot_map[i] is not None for i in indices)
        with gr.Accordion(
            GROUP_TITLES[group],
            open=group in ("expression", "hair", "accessories", "custom"),
            visible=visible,
            elem_id=f"group-{group}",
            elem_classes=["attr-group"],
        ) as accordion:
            c[f"group:{group}"] = accordion
            for i in indices:
                name = slot_map[i]
                # The default model's looks at build time; slider_updates redoes them per model.
                look = slider_look(
                    name or "(unused)",
                    studio.full_strengths.get(name),
                    studio.edit_reliability.get(name),
                )
                c[f"slot{i}"] = gr.Slider(
                    look.minimum,
                    look.maximum,
                    value=0.0,
                    step=look.step,
                    label=look.label,
                    visible=name is not None,
                    elem_id=bank.slots[i].elem_id,
                    elem_classes=list(look.classes),
                    min_width=200,
                )
            names = [slot_map[i] for i in indices if slot_map[i] is not None]
            c[f"locks:{group}"] = gr.CheckboxGroup(
                [(attribute_label(n), n) for n in names],
                value=[],
                label="Keep fixed",
                elem_id=f"locks-{group}",
            )
    c["seed"] = gr.Number(
        -1,
        precision=0,
        label="Variation seed (-1: faithful to the photo; ≥ 0: fresh noise)",
        elem_id="variation-seed",
        minimum=-1,
    )


def _interpolate_tab(c: dict[str, Any]) -> None:
    gr.Markdown("Two faces in, a morph out: z_sem moves linearly, x_T spherically.")
    with gr.Row():
        c["interp_a"] = PhotoInput(type="filepath", label="Face A", elem_id="interp-a", height=240)
        c["interp_b"] = PhotoInput(type="filepath", label="Face B", elem_id="interp-b", height=240)
    with gr.Row():
        c["interp_frames"] = gr.Slider(
            2, 16, value=6, step=1, label="Frames", elem_id="interp-frames"
        )
        c["interp_btn"] = gr.Button("Interpolate", variant="primary", elem_id="interp-btn")
    c["interp_strip"] = gr.Image(
        label="Strip",
        format="png",
        interactive=False,
        elem_id="interp-strip",
        type="filepath",
        buttons=["download", "fullscreen"],
    )
    c["interp_gif"] = gr.Image(
        label="Animation (GIF)",
        interactive=False,
        elem_id="interp-gif",
        type="filepath",
        format="gif",
        buttons=["download"],
        height=256,
    )


def _random_tab(c: dict[str, Any], studio: Any) -> None:
    if not getattr(studio, "has_latent_dpm", False):
        gr.Markdown("The default model has no latent DPM, so it cannot draw random faces.")
    gr.Markdown("Random faces from the latent DPM. Pick one and send it to the Edit tab.")
    with gr.Row():
        c["sample_seed"] = gr.Number(0, precision=0, label="Seed", elem_id="sample-seed", minimum=0)
        c["sample_count"] = gr.Slider(
            1, 8, value=4, step=1, label="How many", elem_id="sample-count"
        )
        c["sample_btn"] = gr.Button("Draw faces", variant="primary", elem_id="sample-btn")
    c["gallery"] = gr.Gallery(
        label="Random faces",
        columns=4,
        height=300,
        elem_id="gallery",
        allow_preview=False,
        format="png",
    )
    c["sample_status"] = gr.Markdown("", elem_id="sample-status")
    c["send_btn"] = gr.Button("Send to Edit", elem_id="send-to-edit")


def _custom_tab(c: dict[str, Any], studio: Any) -> None:
    gr.Markdown(
        "Teach the studio a new attribute: a few photos **with** it and a few **without** "
        "(2 of each at least, 4+ work better). A new slider appears in the Edit tab's *Custom* "
        "group for this session; download the artefact to keep it."
    )
    with gr.Row():
        c["custom_pos"] = gr.File(
            file_count="multiple",
            file_types=IMAGE_TYPES,
            label="Photos WITH the attribute",
            elem_id="custom-pos",
            type="filepath",
        )
        c["custom_neg"] = gr.File(
            file_count="multiple",
            file_types=IMAGE_TYPES,
            label="Photos WITHOUT it",
            elem_id="custom-neg",
            type="filepath",
        )
    with gr.Row():
        c["custom_name"] = gr.Textbox(
            label="Name", placeholder="e.g. Freckles", elem_id="custom-name"
        )
        c["custom_aligned"] = gr.Checkbox(
            False, label="The examples are aligned face crops", elem_id="custom-aligned"
        )
        c["custom_btn"] = gr.Button("Create slider", variant="primary", elem_id="custom-btn")
    c["custom_status"] = gr.Markdown("", elem_id="custom-status")
    c["custom_file"] = gr.File(
        label="Classifier artefact", interactive=False, elem_id="custom-file"
    )
    with gr.Row():
        c["saved_pick"] = gr.Dropdown(
            choices=saved.saved_choices(studio),
            value=[],
            multiselect=True,
            allow_custom_value=False,
            label="Saved attributes for this model (the server's classifiers/ folder)",
            elem_id="saved-pick",
            scale=4,
        )
        c["saved_btn"] = gr.Button("Add to my sliders", elem_id="saved-btn", scale=1)


def _api_components(c: dict[str, Any]) -> None:
    """Hidden inputs/outputs of the API-only endpoints (they share the session's State)."""
    with gr.Column(visible=False):
        c["api_photo"] = PhotoInput(type="filepath", label="photo")
        c["api_face"] = gr.Number(0, precision=0, label="face_index")
        c["api_quality"] = gr.Textbox(DEFAULT_QUALITY, label="quality")
        c["api_aligned"] = gr.Checkbox(False, label="aligned")
        c["api_crop"] = gr.Image(format="png", label="aligned_crop")
        c["api_recon"] = gr.Image(format="png", label="reconstruction")
        c["api_info"] = gr.JSON(label="info")
        c["api_strengths"] = gr.JSON({}, label="strengths")
        c["api_locks"] = gr.JSON([], label="locks")
        c["api_targets"] = gr.JSON({}, label="targets")
        c["api_seed"] = gr.Number(-1, precision=0, label="seed")
        c["api_paste"] = gr.Textbox(DEFAULT_PASTE, label="paste")
        c["api_edited_crop"] = gr.Image(format="png", label="edited_crop")
        c["api_edited_photo"] = gr.Image(format="png", type="filepath", label="edited_photo")
        c["api_result"] = gr.JSON(label="result")
        c["api_attributes"] = gr.JSON(label="attributes")
        c["api_encode_btn"] = gr.Button("encode")
        c["api_edit_btn"] = gr.Button("edit")
        c["api_attributes_btn"] = gr.Button("attributes")


# --------------------------------------------------------------------------- wiring


def _mapper(c: dict[str, Any], keys: Sequence[str]) -> Callable[[dict[str, Any]], dict]:
    allowed = set(keys)

    def to_components(result: dict[str, Any]) -> dict:
        unknown = set(result) - allowed
        if unknown:  # a programming error: the event does not list these outputs
            raise KeyError(f"handler returned outputs not wired to this event: {sorted(unknown)}")
        return {c[k]: v for k, v in result.items()}

    return to_components


def _outputs(c: dict[str, Any], keys: Sequence[str]) -> list[Any]:
    return [c[k] for k in keys]


def _wire(c: dict[str, Any], h: Handlers, bank: SliderBank) -> None:
    slot_keys = [f"slot{i}" for i in range(len(bank))]
    group_keys = [f"group:{g}" for g in GROUPS]
    lock_keys = [f"locks:{g}" for g in GROUPS]
    slider_keys = [*slot_keys, *group_keys, *lock_keys]
    result_keys = ["edited_crop", "compare", "dl_png", "dl_crop", "dl_recipe"]
    session_keys = [
        "state",
        "crop",
        "recon",
        "quality_md",
        "chart",
        "status",
        "dl_encoding",
        "faces_view",
        "face_pick",
        *result_keys,
        *slider_keys,
    ]
    private = {"api_visibility": "private"}

    # ---- encoding: once per photo (upload, webcam, example click all fire change)
    encode_map = _mapper(c, session_keys)

    @gpu()
    def on_photo(photo, aligned, quality, mode, state, progress=gr.Progress()):  # noqa: B008
        return encode_map(h.on_photo(photo, aligned, quality, mode, state, progress))

    @gpu()
    def on_face_or_quality(choice, quality, mode, state, progress=gr.Progress()):  # noqa: B008
        # One handler for both: it encodes the face the picker shows at the quality the radio
        # shows, whichever of the two changed (see the listener below).
        return encode_map(h.on_quality(quality, mode, state, progress, face_choice=choice))

    # ---- rendering: one listener for every slider release, lock, number box and the button
    render_keys = ["edited_crop", "compare", "chart", "status", "dl_png", "dl_crop", "dl_recipe"]
    render_map = _mapper(c, render_keys)
    n_groups = len(GROUPS)

    @gpu()
    def on_render(state, mode, quality, seed, paste, *rest, progress=gr.Progress()):  # noqa: B008
        locks = [name for group in rest[:n_groups] for name in (group or [])]
        values = rest[n_groups:]
        for out in h.on_render(state, mode, quality, seed, locks, values, progress, paste=paste):
            yield render_map(out)

    render_inputs = [
        c["state"],
        c["mode"],
        c["quality"],
        c["seed"],
        c["paste"],
        *_outputs(c, lock_keys),
        *_outputs(c, slot_keys),
    ]
    render_event = gr.on(
        triggers=[
            *(c[k].release for k in slot_keys),
            *(c[k].input for k in lock_keys),
            c["render_btn"].click,
            c["seed"].submit,
            c["paste"].input,
        ],
        fn=on_render,
        inputs=render_inputs,
        outputs=_outputs(c, render_keys),
        trigger_mode="always_last",
        # The bar (step count and ETA) sits on the status line, so the forming face stays
        # visible in the image while previews stream in.
        show_progress="full",
        show_progress_on=[c["status"]],
        concurrency_id="model",
        **private,
    )
    # A slider starting to move makes the render in flight stale: it stops at its next step
    # (not queued, so it runs while that render holds the model), and the release renders.
    gr.on(
        triggers=[*(c[k].input for k in slot_keys), c["render_btn"].click],
        fn=h.on_slider_moving,
        inputs=[c["state"]],
        outputs=None,
        queue=False,
        show_progress="hidden",
        **private,
    )

    photo_event_kwargs = {
        "outputs": _outputs(c, session_keys),
        "trigger_mode": "always_last",
        "cancels": [render_event],
        "show_progress_on": [c["crop"], c["recon"]],
        "concurrency_id": "model",
        **private,
    }
    c["photo"].change(
        on_photo,
        inputs=[c["photo"], c["aligned"], c["quality"], c["mode"], c["state"]],
        **photo_event_kwargs,
    )
    c["aligned"].input(
        on_photo,
        inputs=[c["photo"], c["aligned"], c["quality"], c["mode"], c["state"]],
        **photo_event_kwargs,
    )
    # Face picks and quality changes share ONE always_last listener: two listeners could run
    # at once and the slower one (e.g. face 1 at the new quality, started before the pick
    # reached the state) would overwrite the newer choice. One listener runs them in turn,
    # and each run reads both controls as they are when it starts.
    gr.on(
        triggers=[c["face_pick"].input, c["quality"].input],
        fn=on_face_or_quality,
        inputs=[c["face_pick"], c["quality"], c["mode"], c["state"]],
        **photo_event_kwargs,
    )

    # ---- slider mode, reset, search
    mode_map = _mapper(c, slider_keys)
    c["mode"].input(
        lambda mode, state: mode_map(h.on_mode(mode, state)),
        inputs=[c["mode"], c["state"]],
        outputs=_outputs(c, slider_keys),
        show_progress="hidden",
        **private,
    )
    reset_keys = [*slider_keys, *result_keys, "chart", "status"]
    reset_map = _mapper(c, reset_keys)
    c["reset_btn"].click(
        lambda mode, state: reset_map(h.on_reset(mode, state)),
        inputs=[c["mode"], c["state"]],
        outputs=_outputs(c, reset_keys),
        cancels=[render_event],
        show_progress="hidden",
        **private,
    )
    # `change`, not `input`: Gradio 6 fires a Textbox's input event for typed characters but
    # not for deletions, so clearing the box never reached the filter (measured in Chromium).
    c["search"].change(None, inputs=[c["search"]], js=SEARCH_JS, **private)

    # ---- model selector
    model_keys = [*session_keys, "header", "model_choice"]
    model_map = _mapper(c, model_keys)

    def on_load_model(spec, mode, state, progress=gr.Progress()):  # noqa: B008
        return model_map(h.on_load_model(spec, mode, state, progress))

    c["model_load"].click(
        on_load_model,
        inputs=[c["model_choice"], c["mode"], c["state"]],
        outputs=_outputs(c, model_keys),
        cancels=[render_event],
        concurrency_id="model",
        **private,
    )

    # ---- random faces
    sample_keys = ["gallery", "state", "sample_status"]
    sample_map = _mapper(c, sample_keys)

    @gpu()
    def sample(seed, count, quality, state, progress=gr.Progress()):  # noqa: B008
        """Random faces from the latent DPM (seed, how many, quality preset)."""
        return sample_map(h.on_sample(seed, count, quality, state, progress))

    c["sample_btn"].click(
        sample,
        inputs=[c["sample_seed"], c["sample_count"], c["quality"], c["state"]],
        outputs=_outputs(c, sample_keys),
        api_name="sample",
        concurrency_id="model",
    )

    def on_select(state, evt: gr.SelectData):
        return _mapper(c, ["state"])(h.on_sample_select(evt.index, state))

    c["gallery"].select(on_select, inputs=[c["state"]], outputs=[c["state"]], **private)
    send_keys = [*session_keys, "tabs", "photo"]
    send_map = _mapper(c, send_keys)

    @gpu()
    def send_to_edit(quality, mode, state, progress=gr.Progress()):  # noqa: B008
        return send_map(h.on_send_to_edit(quality, mode, state, progress))

    c["send_btn"].click(
        send_to_edit,
        inputs=[c["quality"], c["mode"], c["state"]],
        outputs=_outputs(c, send_keys),
        concurrency_id="model",
        **private,
    )

    # ---- interpolation
    interp_keys = ["interp_strip", "interp_gif"]
    interp_map = _mapper(c, interp_keys)

    @gpu(duration=120)
    def interpolate(photo_a, photo_b, frames, quality, state, progress=gr.Progress()):  # noqa: B008
        """Morph between the faces of two photos: a strip image and a GIF."""
        return interp_map(h.on_interpolate(photo_a, photo_b, frames, quality, state, progress))

    c["interp_btn"].click(
        interpolate,
        inputs=[c["interp_a"], c["interp_b"], c["interp_frames"], c["quality"], c["state"]],
        outputs=_outputs(c, interp_keys),
        api_name="interpolate",
        concurrency_id="model",
    )

    # ---- custom attribute
    custom_keys = ["state", "custom_status", "custom_file", "chart", *slider_keys]
    custom_map = _mapper(c, custom_keys)

    @gpu()
    def custom(pos, neg, name, aligned, mode, state, progress=gr.Progress()):  # noqa: B008
        return custom_map(h.on_custom(pos, neg, name, aligned, mode, state, progress))

    c["custom_btn"].click(
        custom,
        inputs=[
            c["custom_pos"],
            c["custom_neg"],
            c["custom_name"],
            c["custom_aligned"],
            c["mode"],
            c["state"],
        ],
        outputs=_outputs(c, custom_keys),
        concurrency_id="model",
        **private,
    )

    # ---- saved attributes (classifiers/): listed for the session's model, added to its sliders
    c["custom_tab"].select(
        lambda state: saved.on_show(h, state),
        inputs=[c["state"]],
        outputs=[c["saved_pick"]],
        show_progress="hidden",
        **private,
    )
    saved_keys = ["state", "custom_status", "chart", *slider_keys]
    saved_map = _mapper(c, saved_keys)
    c["saved_btn"].click(
        lambda picked, mode, state: saved_map(saved.on_add(h, picked, mode, state)),
        inputs=[c["saved_pick"], c["mode"], c["state"]],
        outputs=_outputs(c, saved_keys),
        concurrency_id="model",
        **private,
    )

    # ---- API-only endpoints on hidden components
    api_encode_keys = ["state", "api_crop", "api_recon", "api_info"]
    api_encode_map = _mapper(c, api_encode_keys)

    @gpu()
    def encode(photo, face_index, quality, aligned, state):
        """Detect, align and encode a face (kept in this client's session for /edit)."""
        return api_encode_map(h.api_encode(photo, face_index, quality, aligned, state))

    c["api_encode_btn"].click(
        encode,
        inputs=[c["api_photo"], c["api_face"], c["api_quality"], c["api_aligned"], c["state"]],
        outputs=_outputs(c, api_encode_keys),
        api_name="encode",
        concurrency_id="model",
    )
    api_edit_keys = ["api_edited_crop", "api_edited_photo", "api_result"]
    api_edit_map = _mapper(c, api_edit_keys)

    @gpu()
    def edit(strengths, locks, targets, quality, seed, paste, state):
        """Render an edit of the face encoded by /encode in this session."""
        return api_edit_map(
            h.api_edit(strengths, locks, targets, quality, seed, state, paste=paste)
        )

    c["api_edit_btn"].click(
        edit,
        inputs=[
            c["api_strengths"],
            c["api_locks"],
            c["api_targets"],
            c["api_quality"],
            c["api_seed"],
            c["api_paste"],
            c["state"],
        ],
        outputs=_outputs(c, api_edit_keys),
        api_name="edit",
        concurrency_id="model",
    )

    def attributes(state):
        """The slider set (names, groups) and the encoded face's probabilities."""
        return _mapper(c, ["api_attributes"])(h.api_attributes(state))

    c["api_attributes_btn"].click(
        attributes,
        inputs=[c["state"]],
        outputs=[c["api_attributes"]],
        api_name="attributes",
    )
