"""A Gradio component of our own: an image input that leaves decoding to the app."""

from __future__ import annotations

from typing import Any

import gradio as gr
import gradio.component_meta as _component_meta

__all__ = ["PhotoInput"]


def _no_stub(*args: Any, **kwargs: Any) -> None:
    return None


# Gradio writes a .pyi stub next to the module of every component subclass when the class is
# created; our package must not write into itself, so that hook is off while it is defined.
_write_stub = _component_meta.create_or_modify_pyi
_component_meta.create_or_modify_pyi = _no_stub
try:

    class PhotoInput(gr.Image):
        """``gr.Image`` that hands the uploaded *file path* to the handler without decoding it.

        ``gr.Image`` opens every upload with PIL before the handler runs, so a non-image, a
        truncated file or a decompression bomb would fail inside Gradio with a generic error.
        Here the path goes through untouched and ``imaging.load_image`` reports the problem in
        one clear line. (Webcam/clipboard data URLs still take Gradio's route.)
        """

        is_template = True  # rendered by the frontend's Image component

        def preprocess(self, payload: Any) -> Any:
            if payload is None:
                return None
            path = getattr(payload, "path", None)
            url = getattr(payload, "url", None) or ""
            if path and not url.startswith("data:"):
                return str(path)
            try:
                return super().preprocess(payload)
            except Exception:  # noqa: BLE001 - any decoder failure is the same for the user
                raise gr.Error(
                    "this file could not be read as an image; upload a JPEG, PNG or WebP photo",
                    print_exception=False,
                ) from None

finally:
    _component_meta.create_or_modify_pyi = _write_stub
