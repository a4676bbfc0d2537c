"""Encoding a face: photo uploads, face picks and quality changes, and the edit view they open.

Encoding (detect, align, encode z_sem, invert x_T) runs once per photo, face and quality; the
reconstruction is rendered at once, so the edit view is useful before any slider moves.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from .context import UiContext
from .errors import refuse, user_errors
from .files import write_reconstruction
from .readouts import crop_caption, encoded_status, psnr, quality_text
from .requests import face_index, load_photo, optional_progress, preset
from .sliders import probabilities, slider_updates
from .state import UserState
from .views import cleared_face, faces_outputs, unedited_outputs

Outputs = dict[str, Any]


def encode(
    ctx: UiContext,
    photo: str | None,
    aligned: bool,
    quality: str | None,
    state: UserState,
    *,
    face_index: int = 0,
    progress: Any = None,
) -> tuple[UserState, Any]:
    """Load, detect and encode one face; returns (new state, studio). Raises gr.Error."""
    state = ctx.ensure_state(state)
    studio = ctx.studio(state)
    T_inv = preset(quality).T_inv
    with user_errors("reading the photo"):
        if photo is None:
            raise refuse("no photo given; upload one or pick an example")
        image = load_photo(photo)
        report = optional_progress(progress, span=0.8)
        if aligned:
            session = studio.encode_aligned(image, T_inv=T_inv, progress=report, cache=state.cache)
            faces: tuple = ()
        else:
            found = studio.detect_faces(image, cache=state.cache)
            faces = tuple(tuple(float(v) for v in f.box) for f in found)
            session = studio.encode_photo(
                image, face_index=face_index, T_inv=T_inv, progress=report, cache=state.cache
            )
    return state.replace(session=session, faces=faces, slots=ctx.slots_for(studio, state)), studio


def session_outputs(
    ctx: UiContext,
    studio: Any,
    state: UserState,
    mode: str,
    quality: str | None,
    progress: Any = None,
    *,
    progress_start: float = 0.0,
) -> Outputs:
    """Everything the Edit tab shows for a freshly encoded (or sampled) face.

    The reconstruction is rendered here anyway (for its PSNR), so the edit view shows it at
    once: the edited image, the before/after slider (photo | reconstruction pasted back)
    and the downloads are useful before the first slider move, and Reset returns to them.
    """
    session = state.session
    T_render = preset(quality).T_render
    report = optional_progress(progress, start=progress_start, span=1.0 - progress_start)
    recon = studio.reconstruct(session, T_render=T_render, progress=report)
    value = psnr(session.crop, recon.crop)
    encoding, original, recon_files = write_reconstruction(studio, state, recon)
    state = state.replace(
        psnr=value,
        photo_file=original,
        recon_files=recon_files,
        recon_probabilities=dict(recon.probabilities_after),
    )
    before = probabilities(studio, state)
    out: Outputs = {
        "state": state,
        "crop": gr.update(value=session.crop, label=crop_caption(session)),
        "recon": recon.crop,
        "quality_md": quality_text(session, value, T_render),
        "status": encoded_status(session),
        "dl_encoding": gr.update(value=encoding, interactive=True),
        **unedited_outputs(state, before),
    }
    out.update(slider_updates(ctx, state, mode, before))
    return out


def on_photo(
    ctx: UiContext,
    photo: str | None,
    aligned: bool,
    quality: str | None,
    mode: str,
    state: UserState,
    progress: Any = None,
) -> Outputs:
    """Image.change (upload, webcam, example click): encode face 0 once."""
    state = ctx.ensure_state(state)
    if photo is None:  # cleared by the user, or by 'send to Edit': keep the current face
        return {}
    try:
        new_state, studio = encode(ctx, photo, aligned, quality, state, progress=progress)
        with user_errors("encoding the face"):
            out = session_outputs(
                ctx, studio, new_state, mode, quality, progress, progress_start=0.8
            )
    except gr.Error as error:
        # The upload is unusable: say why, and clear what belonged to the previous photo.
        gr.Warning(error.message)
        return {
            "state": state.replace(session=None, faces=(), psnr=None),
            **cleared_face(),
            "status": f"⚠️ {error.message}",
        }
    out.update(faces_outputs(out["state"]))
    if len(out["state"].faces) > 1:
        gr.Info(
            f"{len(out['state'].faces)} faces found: editing face 1 (the largest); pick "
            "another under 'Faces in the photo'."
        )
    return out


def on_face_or_quality(
    ctx: UiContext,
    quality: str | None,
    mode: str,
    state: UserState,
    progress: Any = None,
    *,
    face_choice: str | None = None,
) -> Outputs:
    """A face picked in a group photo, or a new preset (a new T_inv): encode again (cached
    per face and T_inv).

    ``face_choice`` is the face picker's value *now*: the face is the one the picker shows,
    not the one the state held when the event started (a face pick may still be running),
    so results always belong to the latest choice of face and quality.
    """
    state = ctx.ensure_state(state)
    session = state.session
    if session is None:
        return {}
    studio = ctx.studio(state)
    T_inv = preset(quality).T_inv
    index = session.face_index
    if session.kind == "photo" and face_choice:
        index = face_index(face_choice, len(state.faces) or session.num_faces)
    with user_errors("encoding the face"):
        report = optional_progress(progress, span=0.8)
        if session.kind == "photo":
            session = studio.encode_photo(
                session.photo, face_index=index, T_inv=T_inv, progress=report, cache=state.cache
            )
        elif session.kind == "aligned":
            session = studio.encode_aligned(
                session.photo, T_inv=T_inv, progress=report, cache=state.cache
            )
        out = session_outputs(
            ctx, studio, state.replace(session=session), mode, quality, progress, progress_start=0.8
        )
    out.update(faces_outputs(out["state"]))
    return out
