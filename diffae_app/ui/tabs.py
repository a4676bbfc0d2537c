"""The studio's layout: the components of each tab, by name (wiring in ``wiring.py``).

Each function adds one part of the page to the ``Components`` dict, so events can refer to
components by name ('crop', 'slot3', 'locks:hair'...).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gradio as gr

from diffae_app.paste import DEFAULT_PASTE
from diffae_app.session import DEFAULT_QUALITY, QUALITY_PRESETS

from . import saved
from .components import PhotoInput
from .layout import GROUP_TITLES, GROUPS, SliderBank, attribute_label, slider_look
from .sliders import MODES
from .wiring import Components

IMAGE_TYPES = ["image"]


def _result_image(
    label: str, elem_id: str, buttons: list[str], *, format: str = "png", **options: Any
) -> gr.Image:
    """A read-only image output, PNG unless told (Gradio's default would be webp)."""
    return gr.Image(
        label=label, format=format, interactive=False, elem_id=elem_id, buttons=buttons, **options
    )


def _example_photos(label: str, elem_id: str) -> gr.File:
    """An upload box for several example photos (custom attributes)."""
    return gr.File(
        file_count="multiple", file_types=IMAGE_TYPES, label=label, elem_id=elem_id, type="filepath"
    )


def _quality_choices() -> list[tuple[str, str]]:
    return [
        (f"{name} (T_inv {p.T_inv}, T_render {p.T_render})", name)
        for name, p in QUALITY_PRESETS.items()
    ]


def edit_tab(
    c: Components, bank: SliderBank, initial: Any, examples: Sequence[str], studio: Any
) -> None:
    """Three columns: the photo and its encoding | the edit and downloads | the sliders."""
    with gr.Row(equal_height=False):
        with gr.Column(scale=4, min_width=300):
            _input_column(c, examples)
        with gr.Column(scale=4, min_width=300):
            _result_column(c)
        with gr.Column(scale=4, min_width=300):
            _slider_column(c, bank, initial, studio)


def _input_column(c: Components, examples: Sequence[str]) -> None:
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
        c["crop"] = _result_image("Aligned face", "aligned-crop", ["download"], height=170)
        c["recon"] = _result_image("Reconstruction", "reconstruction", ["download"], height=170)
    c["quality_md"] = gr.Markdown("", elem_id="quality")
    c["quality"] = gr.Radio(
        _quality_choices(), value=DEFAULT_QUALITY, label="Quality / speed", elem_id="quality-preset"
    )
    c["aligned"] = gr.Checkbox(
        False,
        label="My image is already an aligned face crop (skip face detection)",
        elem_id="aligned-input",
    )


def _result_column(c: Components) -> None:
    c["edited_crop"] = _result_image(
        "Edited face", "edited-crop", ["download", "fullscreen"], height=240
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


def _slider_column(c: Components, bank: SliderBank, initial: Any, studio: Any) -> None:
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


def interpolate_tab(c: Components) -> None:
    gr.Markdown("Two faces in, a morph out: z_sem moves linearly, x_T spherically.")
    with gr.Row():
        c["interp_a"] = PhotoInput(type="filepath", label="Face A", elem_id="interp-a", height=240)
        c["interp_b"] = PhotoInput(type="filepath", label="Face B", elem_id="interp-b", height=240)
    with gr.Row():
        c["interp_frames"] = gr.Slider(
            2, 16, value=6, step=1, label="Frames", elem_id="interp-frames"
        )
        c["interp_btn"] = gr.Button("Interpolate", variant="primary", elem_id="interp-btn")
    c["interp_strip"] = _result_image(
        "Strip", "interp-strip", ["download", "fullscreen"], type="filepath"
    )
    c["interp_gif"] = _result_image(
        "Animation (GIF)", "interp-gif", ["download"], format="gif", type="filepath", height=256
    )


def random_tab(c: Components, studio: Any) -> None:
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


def custom_tab(c: Components, studio: Any) -> None:
    gr.Markdown(
        "Teach the studio a new attribute: a few photos **with** it and a few **without** "
        "(2 of each at least, 4+ work better). A new slider appears in the Edit tab's *Custom* "
        "group for this session; download the artefact to keep it."
    )
    with gr.Row():
        c["custom_pos"] = _example_photos("Photos WITH the attribute", "custom-pos")
        c["custom_neg"] = _example_photos("Photos WITHOUT it", "custom-neg")
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
