"""The files a user can download: edits, reconstructions, encodings, custom attributes.

Everything is written into the session's private output folder (``UserState.output_dir``);
the functions return paths as strings, which is what Gradio's download buttons take.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from PIL import Image

from .state import UserState


def save_png(image: Image.Image, path: Any, *, fast: bool = False) -> str:
    """``fast``: light compression for the full photo (written on every slider release)."""
    image.save(path, format="PNG", compress_level=1 if fast else 6)
    return str(path)


def write_text(path: Any, text: str) -> str:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return str(path)


def write_result(state: UserState, result: Any) -> dict[str, str]:
    """Files of one render: full photo PNG, aligned crop PNG, recipe JSON (as pasted)."""
    folder = state.output_dir("edit")
    return {
        "png": save_png(result.photo, folder / "edited.png", fast=True),
        "crop": save_png(result.face_crop, folder / "edited-crop.png"),
        "recipe": write_text(folder / "recipe.json", result.recipe.to_json()),
    }


def write_reconstruction(
    studio: Any, state: UserState, recon: Any
) -> tuple[str, str, dict[str, str]]:
    """Files of a freshly encoded face: ``(encoding, original photo, reconstruction files)``;
    the reconstruction files are what the edit view shows before any edit and after Reset."""
    session = state.session
    folder = state.output_dir("encoding")
    encoding = studio.export_encoding(session, folder / "face-encoding.safetensors")
    original = folder / "original.jpg"
    session.photo.save(original, quality=92)
    recon_files = {
        "png": save_png(recon.photo, folder / "reconstruction.png", fast=True),
        "crop": save_png(recon.crop, folder / "reconstruction-crop.png"),
        "recipe": write_text(folder / "recipe.json", recon.recipe.to_json()),
    }
    return str(encoding), str(original), recon_files


def custom_attribute_path(state: UserState, name: str) -> Path:
    """Where a custom attribute trained in this session is saved for download."""
    safe = safe_name(name)
    return state.output_dir(f"custom-{safe}") / f"{safe}.safetensors"


def safe_name(name: str) -> str:
    """A file-name-safe version of an attribute name."""
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)[:64] or "attribute"


def display_name(path: str) -> str:
    """The uploaded file's name as the user knows it (Gradio keeps it in its cache path)."""
    return html.escape(Path(path).name, quote=False)
