"""The API-only endpoints ``/encode``, ``/edit`` and ``/attributes``: their hidden components,
their payload parsing, their handlers and their declarations.

They sit on hidden components and share the caller's session state, so one
``gradio_client.Client`` encodes once and edits many times (docs/APP.md lists the payloads).
"""

from __future__ import annotations

import json
import math
from typing import Any

import gradio as gr

from diffae_app.paste import DEFAULT_PASTE
from diffae_app.session import DEFAULT_QUALITY

from .components import PhotoInput
from .context import UiContext
from .encoding import encode
from .errors import refuse, user_errors
from .files import write_result
from .layout import attribute_group
from .readouts import detector_name, psnr
from .rendering import render
from .requests import optional_progress, preset, variation_seed
from .runtime import gpu
from .sliders import probabilities, read_probabilities
from .state import UserState
from .wiring import Components, event, model_click

Outputs = dict[str, Any]

# --------------------------------------------------------------------------- payloads


def parse_mapping(value: Any, what: str) -> dict[str, float]:
    """``strengths``/``targets``: a JSON object (or its text) of attribute name -> number."""
    if value in (None, "", {}):
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise ValueError(f'{what} must be a JSON object like {{"Smiling": 0.3}}') from None
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be an object of attribute name -> number")
    out = {}
    for key, number in value.items():
        try:
            out[str(key)] = float(number)
        except (TypeError, ValueError):
            raise ValueError(f"{what}: the value of {key!r} must be a number") from None
    return out


def parse_names(value: Any) -> list[str]:
    """``locks``: a JSON list of attribute names, its text, or comma-separated names."""
    if value in (None, "", []):
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list | tuple):
        raise ValueError("locks must be a list of attribute names")
    return [str(v) for v in value]


# --------------------------------------------------------------------------- handlers


def api_encode(
    ctx: UiContext,
    photo: str | None,
    face_index: float | None,
    quality: str | None,
    aligned: bool,
    state: UserState,
    progress: Any = None,
) -> Outputs:
    """/encode: the face is kept in this client's session for /edit and /attributes."""
    state, studio = encode(
        ctx,
        photo,
        bool(aligned),
        quality,
        ctx.ensure_state(state),
        face_index=int(face_index or 0),
        progress=progress,
    )
    session = state.session
    with user_errors("encoding the face"):
        recon = studio.reconstruct(session, T_render=preset(quality).T_render)
        value = psnr(session.crop, recon.crop)
        before = probabilities(studio, state)
    info = {
        "model": studio.model_id,
        "image_size": session.image_size,
        "num_faces": session.num_faces,
        "face_index": session.face_index,
        "faces": [list(box) for box in state.faces],
        "psnr_db": value if math.isfinite(value) else None,
        "T_inv": session.T_inv,
        "detector": detector_name(session),
        "probabilities": before,
    }
    return {
        "state": state.replace(psnr=value),
        "api_crop": session.crop,
        "api_recon": recon.crop,
        "api_info": info,
    }


def api_edit(
    ctx: UiContext,
    strengths: Any,
    locks: Any,
    targets: Any,
    quality: str | None,
    seed: float | None,
    state: UserState,
    progress: Any = None,
    *,
    paste: str | None = DEFAULT_PASTE,
) -> Outputs:
    """/edit: render an edit of this client's encoded face (full photo and crop)."""
    state = ctx.ensure_state(state)
    if state.session is None:
        raise refuse("no face encoded in this session: call /encode first")
    studio = ctx.studio(state)
    with user_errors("reading the edit"):
        strengths = parse_mapping(strengths, "strengths")
        targets = parse_mapping(targets, "targets")
        locks = tuple(parse_names(locks))
    result = render(
        studio, state, strengths, targets, locks, preset(quality).T_render, variation_seed(seed),
        paste=paste, progress=optional_progress(progress),
    )  # fmt: skip
    files = write_result(state, result)
    return {
        "api_edited_crop": result.face_crop,
        "api_edited_photo": files["png"],
        "api_result": {
            "strengths": dict(result.strengths),
            "probabilities_before": dict(result.probabilities_before),
            # measured on the rendered result (encoded again); "asked": the edited code's
            "probabilities_after": dict(result.probabilities_after),
            "probabilities_asked": dict(result.probabilities_asked),
            "corrected": bool(result.corrected),
            "recipe": result.recipe.to_dict(),
            "photo_size": list(result.photo.size),
            "paste": result.paste,
        },
    }


def api_attributes(ctx: UiContext, state: UserState) -> Outputs:
    """/attributes: the slider set (with groups) and, once a face is encoded, its
    probabilities."""
    state = ctx.ensure_state(state)
    studio = ctx.studio(state)
    before = read_probabilities(studio, state)
    custom = set(state.custom_names)
    return {
        "api_attributes": {
            "model": studio.model_id,
            "attributes": [
                {
                    "name": n,
                    "group": "custom" if n in custom else attribute_group(n),
                    "probability": before.get(n),
                }
                for n in [*studio.attribute_names, *state.custom_names]
            ],
            "face_encoded": state.session is not None,
        }
    }


# --------------------------------------------------------------------------- declarations


def api_components(c: Components) -> None:
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


def wire_api(c: Components, ctx: UiContext) -> None:
    """``/encode``, ``/edit`` and ``/attributes`` on the hidden components."""
    encoded = event(c, ["state", "api_crop", "api_recon", "api_info"])

    @gpu()
    def encode(photo, face_index, quality, aligned, state):
        """Detect, align and encode a face (kept in this client's session for /edit)."""
        return encoded.map(api_encode(ctx, photo, face_index, quality, aligned, state))

    encode_inputs = ["api_photo", "api_face", "api_quality", "api_aligned", "state"]
    model_click(c, "api_encode_btn", encode, encode_inputs, encoded, api_name="encode")
    edited = event(c, ["api_edited_crop", "api_edited_photo", "api_result"])

    @gpu()
    def edit(strengths, locks, targets, quality, seed, paste, state):
        """Render an edit of the face encoded by /encode in this session."""
        return edited.map(
            api_edit(ctx, strengths, locks, targets, quality, seed, state, paste=paste)
        )

    edit_inputs = [
        *("api_strengths", "api_locks", "api_targets", "api_quality", "api_seed", "api_paste"),
        "state",
    ]
    model_click(c, "api_edit_btn", edit, edit_inputs, edited, api_name="edit")
    listed = event(c, ["api_attributes"])

    def attributes(state):
        """The slider set (names, groups) and the encoded face's probabilities."""
        return listed.map(api_attributes(ctx, state))

    # Outside the "model" lane: it only runs the classifier on z_sem, never the UNet.
    c["api_attributes_btn"].click(
        attributes, inputs=c.pick("state"), outputs=listed.outputs, api_name="attributes"
    )
