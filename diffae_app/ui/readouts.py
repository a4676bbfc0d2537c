"""What the studio says about a result: PSNR, captions, status lines, the face overview.

Plain values in, text (Markdown) or a PIL image out; no Gradio. The metrics themselves come
from the library (:mod:`diffae_app.metrics`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PIL import Image, ImageDraw

from diffae_app.align import DETECTOR_LABELS
from diffae_app.metrics import pooled_psnr_db

from .layout import attribute_label

# The face overview is shown at most this wide/high (boxes are scaled with it).
OVERVIEW_SIDE = 1024


def psnr(a: Image.Image, b: Image.Image) -> float:
    """PSNR in dB between two RGB images, b resized to a's size (inf when identical)."""
    return pooled_psnr_db(a.convert("RGB"), b.convert("RGB").resize(a.size), peak=255.0)


def detector_name(session: Any) -> str | None:
    """The landmark backend that aligned the session's face (None: no detection ran)."""
    aligned = getattr(session, "aligned", None)
    return aligned.face.backend if aligned is not None else None


def crop_caption(session: Any) -> str:
    """The aligned-face caption: which detector found and aligned the face."""
    backend = detector_name(session)
    if backend is not None:
        return f"Aligned face (detector: {DETECTOR_LABELS.get(backend, backend)})"
    if session.kind == "aligned":
        return "Aligned face (given as aligned, no detection)"
    return "Aligned face (no detection)"


def quality_text(session: Any, psnr_db: float, T_render: int) -> str:
    """The line under the aligned face and its reconstruction."""
    if session.kind == "sample":
        # A random face has no photo behind it: its "input" is its own render, so a PSNR
        # against it says nothing (it is infinite).
        return (
            f"Random face ({session.image_size} px, rendered with T_render "
            f"{T_render}); edits render from its own noise."
        )
    return (
        f"Reconstruction vs the aligned input: **PSNR {psnr_db:.1f} dB** "
        f"({session.image_size} px, T_inv {session.T_inv or '—'}, "
        f"T_render {T_render})"
    )


def encoded_status(session: Any) -> str:
    """The status line once a face (or a random face) is ready to edit."""
    if session.kind == "sample":
        return "Random face ready: the edit view shows it (no edit yet). Move a slider to edit."
    return (
        "Face encoded: the edit view shows its reconstruction (no edit yet). Move a slider to edit."
    )


def overview(
    photo: Image.Image, boxes: Sequence[tuple[float, float, float, float]]
) -> tuple[Image.Image, list[tuple[int, int, int, int]]]:
    """The photo reduced for display, with the face boxes scaled to it (and numbered)."""
    scale = min(1.0, OVERVIEW_SIDE / max(photo.size))
    image = (
        photo
        if scale == 1.0
        else photo.resize((max(1, round(photo.width * scale)), max(1, round(photo.height * scale))))
    )
    image = image.copy()
    draw = ImageDraw.Draw(image)
    scaled = []
    for i, (left, top, right, bottom) in enumerate(boxes):
        box = tuple(int(round(v * scale)) for v in (left, top, right, bottom))
        scaled.append(box)
        draw.text((box[0] + 3, box[1] + 2), str(i + 1), fill=(255, 255, 0))
    return image, scaled


def edit_summary(result: Any, targets: dict[str, float], locks: Sequence[str], steps: int) -> str:
    """One status line: strengths applied, targets asked vs measured on the result, locks."""
    moved = ", ".join(
        f"{attribute_label(k)} {v:+.2f}" for k, v in result.strengths.items() if abs(v) > 1e-9
    )
    text = f"Rendered with {steps} steps" + (f": {moved}" if moved else " (no edit)")
    if targets:
        got = result.probabilities_after
        reached = "; ".join(
            f"{attribute_label(k)} target {100 * v:.0f}%, got {100 * got.get(k, v):.0f}%"
            for k, v in targets.items()
        )
        text += f". {reached}" + (" (after one corrective step)" if result.corrected else "")
    if locks:
        text += f"; kept fixed: {', '.join(attribute_label(n) for n in locks)}"
    return text + "."


def custom_status(
    name: str, n_with: int, n_without: int, skipped: Sequence[str], accuracy: float | None
) -> str:
    """The Custom tab's line after a new attribute was trained."""
    return (
        f"Added the slider **{attribute_label(name)}** to the Edit tab "
        f"(group 'Custom'; {n_with} with, {n_without} without"
        + (f", skipped {len(skipped)} unusable" if skipped else "")
        + (f", training accuracy {accuracy:.0%}" if accuracy is not None else "")
        + "). It lasts for this session; download the artefact to keep it."
    )
