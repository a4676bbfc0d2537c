"""An image input that leaves decoding to the app, built on the public ``gr.Image``."""

from __future__ import annotations

from typing import Any

import gradio as gr

__all__ = ["PhotoInput", "photo_input"]


def photo_input(**kwargs: Any) -> gr.Image:
    """``gr.Image`` that hands the uploaded *file path* to the handler without decoding it.

    ``gr.Image`` opens every upload with PIL before the handler runs, so a non-image, a
    truncated file or a decompression bomb would fail inside Gradio with a generic error. Here
    the path goes through untouched and ``imaging.load_image`` reports the problem in one clear
    line. (Webcam/clipboard data URLs still take Gradio's route.) Takes ``gr.Image``'s keyword
    arguments; use ``type="filepath"``.
    """
    image = gr.Image(**kwargs)
    decode = image.preprocess  # gr.Image's own, for data URLs

    def preprocess(payload: Any) -> Any:
        if payload is None:
            return None
        path = getattr(payload, "path", None)
        url = getattr(payload, "url", None) or ""
        if path and not url.startswith("data:"):
            return str(path)
        try:
            return decode(payload)
        except Exception:  # noqa: BLE001 - any decoder failure is the same for the user
            raise gr.Error(
                "this file could not be read as an image; upload a JPEG, PNG or WebP photo",
                print_exception=False,
            ) from None

    # Set on the instance (Gradio calls ``block.preprocess`` per event), not in a subclass: a
    # component subclass makes Gradio write a .pyi stub into our package when it is defined.
    image.preprocess = preprocess  # type: ignore[method-assign]
    return image


#: The name ``ui/app.py`` uses; it moves to ``photo_input`` in the UI refactor.
PhotoInput = photo_input
