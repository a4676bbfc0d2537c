"""Random faces from the latent DPM (draw, pick, send to Edit) and interpolation."""

from __future__ import annotations

from typing import Any

import gradio as gr

from diffae_app.studio import write_gif, write_strip

from .context import UiContext
from .encoding import session_outputs
from .errors import refuse, user_errors
from .requests import load_photo, optional_progress, preset
from .state import UserState
from .views import faces_outputs

Outputs = dict[str, Any]


def on_sample(
    ctx: UiContext,
    seed: float | None,
    count: float | None,
    quality: str | None,
    state: UserState,
    progress: Any = None,
) -> Outputs:
    """Draw ``count`` random faces; they wait in the state for 'Send to Edit'."""
    state = ctx.ensure_state(state)
    studio = ctx.studio(state)
    seed_value = 0 if seed is None or seed < 0 else int(seed)
    n = int(count or 1)
    with user_errors("drawing random faces"):
        sessions = studio.sample_sessions(
            n,
            seed=seed_value,
            T_render=preset(quality).T_render,
            progress=optional_progress(progress),
        )
    gallery = [(s.crop, f"seed {seed_value} · #{i}") for i, s in enumerate(sessions)]
    return {
        "gallery": gallery,
        "state": state.replace(samples=tuple(sessions), selected_sample=0),
        "sample_status": f"{n} random face{'s' if n != 1 else ''}: pick one and press "
        "**Send to Edit**.",
    }


def on_sample_select(ctx: UiContext, index: int | None, state: UserState) -> Outputs:
    """A random face clicked in the gallery."""
    state = ctx.ensure_state(state)
    if index is None or not 0 <= int(index) < len(state.samples):
        return {}
    return {"state": state.replace(selected_sample=int(index))}


def on_send_to_edit(
    ctx: UiContext, quality: str | None, mode: str, state: UserState, progress: Any = None
) -> Outputs:
    """The picked random face becomes the face being edited (its own noise is its x_T)."""
    state = ctx.ensure_state(state)
    if not state.samples:
        raise refuse("draw some random faces first")
    studio = ctx.studio(state)
    session = state.samples[min(state.selected_sample, len(state.samples) - 1)]
    state = state.replace(session=session, faces=(), slots=ctx.slots_for(studio, state))
    with user_errors("preparing the random face"):
        out = session_outputs(ctx, studio, state, mode, quality, progress)
    out.update(faces_outputs(out["state"]))
    out["tabs"] = gr.update(selected="edit")
    out["photo"] = None
    return out


def on_interpolate(
    ctx: UiContext,
    photo_a: str | None,
    photo_b: str | None,
    frames: float | None,
    quality: str | None,
    state: UserState,
    progress: Any = None,
) -> Outputs:
    """Morph between the faces of two photos: a strip image and a GIF."""
    state = ctx.ensure_state(state)
    if photo_a is None or photo_b is None:
        raise refuse("upload two faces to interpolate between")
    studio = ctx.studio(state)
    steps = preset(quality)
    n = int(frames or 8)
    with user_errors("interpolating"):
        a, b = (
            studio.encode_photo(
                load_photo(photo),
                T_inv=steps.T_inv,
                cache=state.cache,
                progress=optional_progress(progress, start=start, span=0.25),
            )
            for photo, start in ((photo_a, 0.0), (photo_b, 0.25))
        )
        images = studio.interpolate(
            a,
            b,
            n,
            T_render=steps.T_render,
            progress=optional_progress(progress, start=0.5, span=0.5),
        )
        folder = state.output_dir("interpolation")
        strip_path = folder / "interpolation-strip.png"
        write_strip(images, strip_path)
        gif_path = write_gif(images, folder / "interpolation.gif", bounce=True)
    return {"interp_strip": str(strip_path), "interp_gif": str(gif_path)}
