"""What the Edit tab's result side shows, as output dicts keyed by component name: the
unedited reconstruction, an empty view, the faces of a group photo."""

from __future__ import annotations

from typing import Any

import gradio as gr
from PIL import Image

from .layout import probability_chart_html
from .readouts import overview
from .requests import face_labels
from .state import UserState

Outputs = dict[str, Any]


def cleared_results() -> Outputs:
    """No edited face, no before/after, downloads disabled."""
    return {
        "edited_crop": None,
        "compare": None,
        "dl_png": gr.update(value=None, interactive=False),
        "dl_crop": gr.update(value=None, interactive=False),
        "dl_recipe": gr.update(value=None, interactive=False),
    }


def cleared_face() -> Outputs:
    """No face at all: after an unusable upload or a model switch."""
    return {
        "crop": None,
        "recon": None,
        "quality_md": "",
        "chart": probability_chart_html({}),
        "faces_view": gr.update(visible=False, value=None),
        "face_pick": gr.update(visible=False, choices=[], value=None),
        "dl_encoding": gr.update(value=None, interactive=False),
        **cleared_results(),
    }


def original(state: UserState) -> Image.Image | str:
    """The 'before' side of the before/after view."""
    return state.photo_file or state.session.photo


def unedited_outputs(state: UserState, before: dict[str, float]) -> Outputs:
    """The edit view showing the unedited reconstruction (after encoding and Reset)."""
    files = state.recon_files
    if state.session is None or not files:
        return {"chart": probability_chart_html(before), **cleared_results()}
    return {
        "edited_crop": files["crop"],
        "compare": (original(state), files["png"]),
        "chart": probability_chart_html(
            before, state.recon_probabilities or {}, after_label="reconstruction"
        ),
        "dl_png": gr.update(value=files["png"], interactive=True),
        "dl_crop": gr.update(value=files["crop"], interactive=True),
        "dl_recipe": gr.update(value=files["recipe"], interactive=True),
    }


def edited_outputs(state: UserState, result: Any, files: dict[str, str], chart: str) -> Outputs:
    """The edit view showing a finished render and its downloads."""
    return {
        "edited_crop": result.face_crop,
        "compare": (original(state), files["png"]),
        "chart": chart,
        "dl_png": gr.update(value=files["png"], interactive=True),
        "dl_crop": gr.update(value=files["crop"], interactive=True),
        "dl_recipe": gr.update(value=files["recipe"], interactive=True),
    }


def faces_outputs(state: UserState) -> Outputs:
    """The group photo with numbered boxes and the face picker (hidden for one face)."""
    faces = state.faces
    if len(faces) <= 1 or state.session is None:
        return {
            "faces_view": gr.update(visible=False, value=None),
            "face_pick": gr.update(visible=False, choices=[], value=None),
        }
    image, boxes = overview(state.session.photo, faces)
    labels = face_labels(len(faces))
    return {
        "faces_view": gr.update(visible=True, value=(image, list(zip(boxes, labels, strict=True)))),
        "face_pick": gr.update(
            visible=True, choices=labels, value=labels[state.session.face_index]
        ),
    }
