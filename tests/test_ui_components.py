"""ui/components.photo_input: Gradio hands an upload's path to the handler undecoded."""

from __future__ import annotations

import asyncio
from pathlib import Path

import gradio as gr
import pytest

import diffae_app.ui.components as components
from diffae_app.ui.components import photo_input


def _preprocess(make_input, path: Path) -> list:
    """Run Gradio's own input processing of an event (what a browser or API upload goes
    through) on one uploaded file."""
    with gr.Blocks() as demo:
        image = make_input()
        image.change(lambda x: x, image, gr.Textbox())
    payload = {"path": str(path), "meta": {"_type": "gradio.FileData"}}
    return asyncio.run(demo.preprocess_data(demo.fns[0], [payload], None, explicit_call=True))


def test_a_non_image_upload_reaches_the_handler_as_its_path(tmp_path: Path) -> None:
    upload = tmp_path / "not_an_image.png"
    upload.write_bytes(b"not a PNG at all")
    (path,) = _preprocess(lambda: photo_input(type="filepath"), upload)
    assert Path(path).name == upload.name and Path(path).read_bytes() == upload.read_bytes()
    # A plain gr.Image decodes first and fails inside Gradio: the difference is real.
    with pytest.raises(Exception, match="preprocess"):
        _preprocess(lambda: gr.Image(type="filepath"), upload)


def test_a_bad_data_url_is_one_clear_error() -> None:
    image = photo_input(type="filepath")
    payload = image.data_model.model_validate({"url": "data:image/png;base64,AAAA"})
    with pytest.raises(gr.Error, match="could not be read as an image"):
        image.preprocess(payload)


def test_no_stub_file_is_written_into_the_package() -> None:
    photo_input(type="filepath")
    assert not Path(components.__file__).with_suffix(".pyi").exists()
