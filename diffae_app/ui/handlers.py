"""Thin event handlers of the studio: pipeline calls in, display values out.

Every handler takes plain values (file paths, numbers, the user's :class:`UserState`) and
returns (or yields) a ``dict`` keyed by *component names* (``"crop"``, ``"slot3"``,
``"locks:hair"``...); ``ui/app.py`` maps those names onto the Gradio components. So the
handlers can be called directly in tests, and no tensor math happens here: everything goes
through :class:`~diffae_app.pipeline.Studio`.

Errors a user can act on (unreadable image, no face, missing model...) become one-line
``gr.Error``/``gr.Warning`` toasts; anything unexpected is logged with its traceback on the
server and shown as a short generic message. Either way the session stays usable.
"""

from __future__ import annotations

import html
import json
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image, ImageDraw

from diffae_app.align import DETECTOR_LABELS, DetectorUnavailable
from diffae_app.editing import MIN_CUSTOM_EXAMPLES
from diffae_app.imaging import load_image
from diffae_app.metrics import pooled_psnr_db
from diffae_app.paste import DEFAULT_PASTE
from diffae_app.progress import Cancelled, Eta
from diffae_app.session import DEFAULT_QUALITY, QUALITY_PRESETS
from diffae_app.studio import write_gif, write_strip

from .layout import (
    DEFAULT_STRENGTH_RANGE,
    DEFAULT_STRENGTH_STEP,
    GROUPS,
    SliderBank,
    attribute_label,
    probability_chart_html,
    slider_look,
    values_by_name,
)
from .models import ModelRegistry, describe
from .state import UserState
from .streaming import stream

logger = logging.getLogger(__name__)

MODES = ("strength", "target probability")
# Official units: 0.3 is a typical FFHQ edit. Attributes with a calibrated "full" strength
# (``evaluate --write``) get a range of their own (layout.strength_range); this is the rest's.
STRENGTH_RANGE = DEFAULT_STRENGTH_RANGE
STRENGTH_STEP = DEFAULT_STRENGTH_STEP
TARGET_STEP = 0.01
# Targets are solved in logit space: keep them off 0 and 1.
_TARGET_CLAMP = (0.001, 0.999)
# A target slider counts as moved when it is this far from the face's own probability.
_TARGET_TOLERANCE = 0.005
# The face overview is shown at most this wide/high (boxes are scaled with it).
_OVERVIEW_SIDE = 1024

Outputs = dict[str, Any]


# --------------------------------------------------------------------------- errors


@contextmanager
def user_errors(action: str) -> Iterator[None]:
    """Turn exceptions into toasts: the pipeline's one-line messages as they are, anything
    else as a short generic line (with the traceback in the server log only)."""
    try:
        yield
    except (gr.Error, Cancelled):  # Cancelled: a newer request replaced this one; not an error
        raise
    except (ValueError, PermissionError, DetectorUnavailable) as error:
        # The project's convention: ValueError subclasses (ImageError, StudioError,
        # NoFaceFound, CheckpointError, ClassifierError...) carry a message for the user.
        raise gr.Error(
            _one_line(str(error)) or type(error).__name__, print_exception=False
        ) from None
    except MemoryError:
        raise gr.Error(
            f"the server ran out of memory while {action}; try a smaller photo",
            print_exception=False,
        ) from None
    except Exception as error:  # noqa: BLE001 - last line of defence: no stack trace in the UI
        logger.exception("unexpected error while %s", action)
        raise gr.Error(
            f"something went wrong while {action} ({type(error).__name__}); the session is "
            "still usable, please try again",
            print_exception=False,
        ) from None


def _one_line(text: str) -> str:
    # Toasts render HTML: escape, since messages may quote file names the user chose.
    return html.escape(" ".join(text.split()), quote=False)


def _progress_callback(progress: Any, *, start: float = 0.0, span: float = 1.0) -> Callable:
    """Pipeline ``(step, total, message)`` -> a ``gr.Progress`` (or None: no-op); the bar's
    text gets the time left, from the pace of the steps so far."""
    if progress is None:
        return lambda step, total, message: None
    eta = Eta()

    def report(step: int, total: int, message: str) -> None:
        left = eta.text(step, total)
        desc = f"{message} · {left}" if left and step < total else message
        progress(start + span * step / max(1, total), desc=desc)

    return report


def _preset(quality: str | None) -> Any:
    name = (quality or DEFAULT_QUALITY).strip().lower()
    if name not in QUALITY_PRESETS:
        raise gr.Error(
            f"unknown quality {quality!r}; use one of: {', '.join(QUALITY_PRESETS)}",
            print_exception=False,
        )
    return QUALITY_PRESETS[name]


def psnr(a: Image.Image, b: Image.Image) -> float:
    """PSNR in dB between two RGB images, b resized to a's size (inf when identical)."""
    return pooled_psnr_db(a.convert("RGB"), b.convert("RGB").resize(a.size), peak=255.0)


def load_photo(source: Any) -> Image.Image:
    """``imaging.load_image`` (upright 8-bit RGB), returned without metadata.

    The upright image still carries the file's EXIF orientation tag, so handing it to a
    function that calls ``load_image`` again would rotate it twice; a bare copy has no tag.
    """
    image = load_image(source)
    return Image.fromarray(np.asarray(image))


def _save_png(image: Image.Image, path: Any, *, fast: bool = False) -> str:
    image.save(path, format="PNG", compress_level=1 if fast else 6)
    return str(path)


# --------------------------------------------------------------------------- handlers


class Handlers:
    """All handlers of one app, bound to its model registry and slider layout."""

    def __init__(self, models: ModelRegistry, bank: SliderBank) -> None:
        self.models = models
        self.bank = bank

    # ------------------------------------------------------------------ helpers

    def studio(self, state: UserState) -> Any:
        with user_errors("loading the model"):
            return self.models.get(state.model or None, owner=state.uid)

    def new_state(self) -> UserState:
        """The initial state of a browser session (its slots map the default model)."""
        return UserState(slots=self.bank.assign(self.models.default.attribute_names))

    def _state(self, state: UserState | None) -> UserState:
        return state if isinstance(state, UserState) else self.new_state()

    def _slot_default(self, name: str | None, mode: str, before: dict[str, float]) -> float:
        if mode == MODES[1] and name is not None:
            return round(float(before.get(name, 0.5)), 2)
        return 0.0

    def slider_updates(self, state: UserState, mode: str, before: dict[str, float]) -> Outputs:
        """Every slot: shown or hidden, its label, range and neutral value for ``mode``."""
        out: Outputs = {}
        target = mode == MODES[1]
        studio = self.studio(state)
        # Custom attributes are the session's own: no calibration, no measurements.
        custom = set(state.custom_names)
        full = {k: v for k, v in studio.full_strengths.items() if k not in custom}
        measured = {k: v for k, v in studio.edit_reliability.items() if k not in custom}
        for i, (slot, name) in enumerate(zip(self.bank.slots, state.slots, strict=True)):
            if name is None:
                out[f"slot{i}"] = gr.update(visible=False, value=0.0)
                continue
            look = slider_look(name, full.get(name), measured.get(name))
            out[f"slot{i}"] = gr.update(
                visible=True,
                label=look.label,
                minimum=0.0 if target else look.minimum,
                maximum=1.0 if target else look.maximum,
                step=TARGET_STEP if target else look.step,
                value=self._slot_default(name, mode, before),
                info=None if slot.name else name,
                elem_classes=list(look.classes),
            )
        visible = self.bank.visible_groups(state.slots)
        for group in GROUPS:
            names = [
                n
                for s, n in zip(self.bank.slots, state.slots, strict=True)
                if s.group == group and n is not None
            ]
            out[f"group:{group}"] = gr.update(visible=group in visible)
            out[f"locks:{group}"] = gr.update(
                choices=[(attribute_label(n), n) for n in names], value=[]
            )
        return out

    def _clear_results(self) -> Outputs:
        return {
            "edited_crop": None,
            "compare": None,
            "dl_png": gr.update(value=None, interactive=False),
            "dl_crop": gr.update(value=None, interactive=False),
            "dl_recipe": gr.update(value=None, interactive=False),
        }

    def _before(self, studio: Any, state: UserState) -> dict[str, float]:
        if state.session is None or not (studio.attribute_names or state.custom):
            return {}
        return dict(studio.attributes(state.session, custom_attributes=state.custom))

    def session_outputs(
        self,
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
        preset = _preset(quality)
        recon = studio.reconstruct(
            session,
            T_render=preset.T_render,
            progress=_progress_callback(progress, start=progress_start, span=1.0 - progress_start)
            if progress is not None
            else None,
        )
        value = psnr(session.crop, recon.crop)
        folder = state.output_dir("encoding")
        encoding = studio.export_encoding(session, folder / "face-encoding.safetensors")
        original = folder / "original.jpg"
        session.photo.save(original, quality=92)
        recon_files = {
            "png": _save_png(recon.photo, folder / "reconstruction.png", fast=True),
            "crop": _save_png(recon.crop, folder / "reconstruction-crop.png"),
            "recipe": _write_text(folder / "recipe.json", recon.recipe.to_json()),
        }
        state = state.replace(
            psnr=value,
            photo_file=str(original),
            recon_files=recon_files,
            recon_probabilities=dict(recon.probabilities_after),
        )
        before = self._before(studio, state)
        if session.kind == "sample":
            # A random face has no photo behind it: its "input" is its own render, so a PSNR
            # against it says nothing (it is infinite).
            quality_text = (
                f"Random face ({session.image_size} px, rendered with T_render "
                f"{preset.T_render}); edits render from its own noise."
            )
        else:
            quality_text = (
                f"Reconstruction vs the aligned input: **PSNR {value:.1f} dB** "
                f"({session.image_size} px, T_inv {session.T_inv or '—'}, "
                f"T_render {preset.T_render})"
            )
        out: Outputs = {
            "state": state,
            "crop": gr.update(value=session.crop, label=crop_caption(session)),
            "recon": recon.crop,
            "quality_md": quality_text,
            "status": (
                "Random face ready: the edit view shows it (no edit yet). Move a slider to edit."
                if session.kind == "sample"
                else "Face encoded: the edit view shows its reconstruction (no edit yet). "
                "Move a slider to edit."
            ),
            "dl_encoding": gr.update(value=str(encoding), interactive=True),
            **self._unedited_outputs(state, before),
        }
        out.update(self.slider_updates(state, mode, before))
        return out

    def _unedited_outputs(self, state: UserState, before: dict[str, float]) -> Outputs:
        """The edit view showing the unedited reconstruction (after encoding and Reset)."""
        files = state.recon_files
        if state.session is None or not files:
            return {"chart": probability_chart_html(before), **self._clear_results()}
        return {
            "edited_crop": files["crop"],
            "compare": (_original(state), files["png"]),
            "chart": probability_chart_html(
                before, state.recon_probabilities or {}, after_label="reconstruction"
            ),
            "dl_png": gr.update(value=files["png"], interactive=True),
            "dl_crop": gr.update(value=files["crop"], interactive=True),
            "dl_recipe": gr.update(value=files["recipe"], interactive=True),
        }

    # ------------------------------------------------------------------ encoding

    def encode(
        self,
        photo: str | None,
        aligned: bool,
        quality: str | None,
        state: UserState,
        *,
        face_index: int = 0,
        progress: Any = None,
    ) -> tuple[UserState, Any]:
        """Load, detect and encode one face; returns (new state, studio). Raises gr.Error."""
        state = self._state(state)
        studio = self.studio(state)
        preset = _preset(quality)
        with user_errors("reading the photo"):
            if photo is None:
                raise gr.Error(
                    "no photo given; upload one or pick an example", print_exception=False
                )
            image = load_photo(photo)
            report = _progress_callback(progress, span=0.8) if progress is not None else None
            if aligned:
                session = studio.encode_aligned(
                    image, T_inv=preset.T_inv, progress=report, cache=state.cache
                )
                faces: tuple = ()
            else:
                found = studio.detect_faces(image, cache=state.cache)
                faces = tuple(tuple(float(v) for v in f.box) for f in found)
                session = studio.encode_photo(
                    image,
                    face_index=face_index,
                    T_inv=preset.T_inv,
                    progress=report,
                    cache=state.cache,
                )
        slots = self.bank.assign(studio.attribute_names, state.custom_names)
        return state.replace(session=session, faces=faces, slots=slots), studio

    def on_photo(
        self,
        photo: str | None,
        aligned: bool,
        quality: str | None,
        mode: str,
        state: UserState,
        progress: Any = None,
    ) -> Outputs:
        """Image.change (upload, webcam, example click): encode face 0 once."""
        state = self._state(state)
        if photo is None:  # cleared by the user, or by 'send to Edit': keep the current face
            return {}
        try:
            new_state, studio = self.encode(photo, aligned, quality, state, progress=progress)
            with user_errors("encoding the face"):
                out = self.session_outputs(
                    studio, new_state, mode, quality, progress, progress_start=0.8
                )
        except gr.Error as error:
            # The upload is unusable: say why, and clear what belonged to the previous photo.
            gr.Warning(error.message)
            cleared = state.replace(session=None, faces=(), psnr=None)
            return {
                "state": cleared,
                "crop": None,
                "recon": None,
                "quality_md": "",
                "chart": probability_chart_html({}),
                **self._faces_outputs(cleared),  # no faces: both hidden
                "status": f"⚠️ {error.message}",
                "dl_encoding": gr.update(value=None, interactive=False),
                **self._clear_results(),
            }
        out.update(self._faces_outputs(out["state"]))
        if len(out["state"].faces) > 1:
            gr.Info(
                f"{len(out['state'].faces)} faces found: editing face 1 (the largest); pick "
                "another under 'Faces in the photo'."
            )
        return out

    def _faces_outputs(self, state: UserState) -> Outputs:
        faces = state.faces
        if len(faces) <= 1 or state.session is None:
            return {
                "faces_view": gr.update(visible=False, value=None),
                "face_pick": gr.update(visible=False, choices=[], value=None),
            }
        overview, boxes = _overview(state.session.photo, faces)
        labels = [f"Face {i + 1}" for i in range(len(faces))]
        return {
            "faces_view": gr.update(
                visible=True, value=(overview, list(zip(boxes, labels, strict=True)))
            ),
            "face_pick": gr.update(
                visible=True, choices=labels, value=labels[state.session.face_index]
            ),
        }

    def on_face_pick(
        self,
        choice: str | None,
        aligned: bool,
        quality: str | None,
        mode: str,
        state: UserState,
        progress: Any = None,
    ) -> Outputs:
        """The user picked another face of the same photo."""
        state = self._state(state)
        if state.session is None or not choice:
            return {}
        index = _face_index(choice, len(state.faces) or state.session.num_faces)
        new_state, studio = self.encode(
            state.session.photo, False, quality, state, face_index=index, progress=progress
        )
        with user_errors("encoding the face"):
            out = self.session_outputs(
                studio, new_state, mode, quality, progress, progress_start=0.8
            )
        out.update(self._faces_outputs(out["state"]))
        return out

    def on_quality(
        self,
        quality: str | None,
        mode: str,
        state: UserState,
        progress: Any = None,
        *,
        face_choice: str | None = None,
    ) -> Outputs:
        """A new preset changes T_inv: invert the face again (cached per T_inv).

        ``face_choice`` is the face picker's value *now*: the face is the one the picker shows,
        not the one the state held when the event started (a face pick may still be running),
        so results always belong to the latest choice of face and quality.
        """
        state = self._state(state)
        session = state.session
        if session is None:
            return {}
        studio = self.studio(state)
        preset = _preset(quality)
        face_index = session.face_index
        if session.kind == "photo" and face_choice:
            face_index = _face_index(face_choice, len(state.faces) or session.num_faces)
        with user_errors("encoding the face"):
            if session.kind == "photo":
                report = _progress_callback(progress, span=0.8) if progress is not None else None
                session = studio.encode_photo(
                    session.photo,
                    face_index=face_index,
                    T_inv=preset.T_inv,
                    progress=report,
                    cache=state.cache,
                )
            elif session.kind == "aligned":
                report = _progress_callback(progress, span=0.8) if progress is not None else None
                session = studio.encode_aligned(
                    session.photo, T_inv=preset.T_inv, progress=report, cache=state.cache
                )
            out = self.session_outputs(
                studio, state.replace(session=session), mode, quality, progress, progress_start=0.8
            )
        out.update(self._faces_outputs(out["state"]))
        return out

    # ------------------------------------------------------------------ editing

    def edit_request(
        self, state: UserState, mode: str, locks: Sequence[str], values: Sequence[float | None]
    ) -> tuple[dict[str, float], dict[str, float], tuple[str, ...], dict[str, float]]:
        """(strengths, targets, locks, before) from the slider values of the visible slots.

        Locked attributes are held fixed, so their sliders are ignored.
        """
        studio = self.studio(state)
        locks = tuple(dict.fromkeys(n for n in locks if n in set(state.slots)))
        by_name = {k: v for k, v in values_by_name(state.slots, values).items() if k not in locks}
        with user_errors("reading the attributes"):
            before = self._before(studio, state)
        if mode == MODES[1]:
            targets = {
                name: min(max(value, _TARGET_CLAMP[0]), _TARGET_CLAMP[1])
                for name, value in by_name.items()
                if abs(value - round(before.get(name, 0.5), 2)) > _TARGET_TOLERANCE
            }
            return {}, targets, locks, before
        strengths = {name: value for name, value in by_name.items() if value != 0.0}
        return strengths, {}, locks, before

    def _render(
        self,
        studio: Any,
        state: UserState,
        strengths: dict,
        targets: dict,
        locks: tuple,
        T_render: int,
        seed: int | None,
        progress: Any = None,
        paste: str = DEFAULT_PASTE,
        *,
        measure: bool = True,
        steps: Callable[[int, int, str], None] | None = None,
        preview: Any = None,
        cancel: Any = None,
    ) -> Any:
        """One studio render. `progress` is a ``gr.Progress``; `steps` (a raw ``(step, total,
        message)`` callback) replaces it; `preview`/`cancel` go to `Studio.render`."""
        if steps is None and progress is not None:
            steps = _progress_callback(progress)
        with user_errors("rendering the edit"):
            return studio.render(
                state.session,
                strengths,
                locks=locks,
                targets=targets,
                T_render=T_render,
                seed=seed,
                custom_attributes=state.custom,
                paste=paste or DEFAULT_PASTE,
                measure=measure,
                progress=steps,
                preview=preview,
                cancel=cancel,
            )

    def write_result(self, state: UserState, result: Any) -> dict[str, str]:
        """Files of one render: full photo PNG, aligned crop PNG, recipe JSON (as pasted)."""
        folder = state.output_dir("edit")
        return {
            "png": _save_png(result.photo, folder / "edited.png", fast=True),
            "crop": _save_png(result.face_crop, folder / "edited-crop.png"),
            "recipe": _write_text(folder / "recipe.json", result.recipe.to_json()),
        }

    def on_render(
        self,
        state: UserState,
        mode: str,
        quality: str | None,
        seed: float | None,
        locks: Sequence[str],
        values: Sequence[float | None],
        progress: Any = None,
        *,
        paste: str = DEFAULT_PASTE,
    ) -> Iterator[Outputs]:
        """Slider release / number box / Render button: the face forming (the sampler's
        current estimate every few steps, with step count and ETA), then the final render.

        A newer render of this user, or a slider starting to move (:meth:`on_slider_moving`),
        stops this one at its next step; it then ends without touching the page. ``paste``
        ("change" or "render") decides the edited face shown, the before/after photo and both
        downloads.
        """
        state = self._state(state)
        if state.session is None:
            raise gr.Error(
                "no face yet: upload a photo or pick an example first", print_exception=False
            )
        stale = state.renders.take()
        studio = self.studio(state)
        strengths, targets, locks, before = self.edit_request(state, mode, locks, values)
        seed_value = None if seed is None or seed < 0 else int(seed)
        moved = [*strengths, *targets]
        preset = _preset(quality)
        report = _progress_callback(progress)
        eta = Eta()

        def work(*, preview: Any, progress: Any, cancel: Any) -> Any:
            return self._render(
                studio,
                state,
                strengths,
                targets,
                locks,
                preset.T_render,
                seed_value,
                paste=paste,
                steps=progress,
                preview=preview,
                cancel=cancel,
            )

        result = None
        try:
            for kind, value in stream(work, stale=stale):
                if kind == "progress":
                    step, total, message = value
                    report(step, total, f"{message} {step}/{total}")
                elif kind == "preview":
                    image, step, total = value
                    yield {
                        "edited_crop": image,
                        "status": f"Rendering: step {step} of {total}, {eta.text(step, total)}…",
                    }
                else:
                    result = value
        except Cancelled:
            return  # a newer edit replaced this one; it renders next
        files = self.write_result(state, result)
        yield {
            "edited_crop": result.face_crop,
            "compare": (_original(state), files["png"]),
            "chart": probability_chart_html(
                before,
                dict(result.probabilities_after),
                asked=dict(result.probabilities_asked),
                highlight=moved,
            ),
            "status": _edit_summary(result, targets, locks, preset.T_render),
            "dl_png": gr.update(value=files["png"], interactive=True),
            "dl_crop": gr.update(value=files["crop"], interactive=True),
            "dl_recipe": gr.update(value=files["recipe"], interactive=True),
        }

    def on_slider_moving(self, state: UserState) -> None:
        """A slider started moving: the render in flight is already out of date, stop it."""
        if isinstance(state, UserState):
            state.renders.supersede()

    def on_mode(self, mode: str, state: UserState) -> Outputs:
        """Strength <-> target-probability sliders: new ranges and neutral values."""
        state = self._state(state)
        studio = self.studio(state)
        with user_errors("reading the attributes"):
            before = self._before(studio, state)
        return self.slider_updates(state, mode, before)

    def on_reset(self, mode: str, state: UserState) -> Outputs:
        """Every slider back to neutral, no locks, the edit view back to the reconstruction."""
        state = self._state(state)
        studio = self.studio(state)
        with user_errors("reading the attributes"):
            before = self._before(studio, state)
        out = self.slider_updates(state, mode, before)
        out.update(self._unedited_outputs(state, before))
        out["status"] = (
            "Reset: sliders back to neutral; showing the unedited reconstruction."
            if state.session is not None
            else "Reset: sliders back to neutral."
        )
        return out

    # ------------------------------------------------------------------ random faces

    def on_sample(
        self,
        seed: float | None,
        count: float | None,
        quality: str | None,
        state: UserState,
        progress: Any = None,
    ) -> Outputs:
        state = self._state(state)
        studio = self.studio(state)
        seed_value = 0 if seed is None or seed < 0 else int(seed)
        n = int(count or 1)
        with user_errors("drawing random faces"):
            sessions = studio.sample_sessions(
                n,
                seed=seed_value,
                T_render=_preset(quality).T_render,
                progress=_progress_callback(progress) if progress is not None else None,
            )
        gallery = [(s.crop, f"seed {seed_value} · #{i}") for i, s in enumerate(sessions)]
        return {
            "gallery": gallery,
            "state": state.replace(samples=tuple(sessions), selected_sample=0),
            "sample_status": f"{n} random face{'s' if n != 1 else ''}: pick one and press "
            "**Send to Edit**.",
        }

    def on_sample_select(self, index: int | None, state: UserState) -> Outputs:
        state = self._state(state)
        if index is None or not 0 <= int(index) < len(state.samples):
            return {}
        return {"state": state.replace(selected_sample=int(index))}

    def on_send_to_edit(
        self, quality: str | None, mode: str, state: UserState, progress: Any = None
    ) -> Outputs:
        state = self._state(state)
        if not state.samples:
            raise gr.Error("draw some random faces first", print_exception=False)
        studio = self.studio(state)
        session = state.samples[min(state.selected_sample, len(state.samples) - 1)]
        state = state.replace(
            session=session,
            faces=(),
            slots=self.bank.assign(studio.attribute_names, state.custom_names),
        )
        with user_errors("preparing the random face"):
            out = self.session_outputs(studio, state, mode, quality, progress)
        out.update(self._faces_outputs(out["state"]))
        out["tabs"] = gr.update(selected="edit")
        out["photo"] = None
        return out

    # ------------------------------------------------------------------ interpolation

    def on_interpolate(
        self,
        photo_a: str | None,
        photo_b: str | None,
        frames: float | None,
        quality: str | None,
        state: UserState,
        progress: Any = None,
    ) -> Outputs:
        state = self._state(state)
        if photo_a is None or photo_b is None:
            raise gr.Error("upload two faces to interpolate between", print_exception=False)
        studio = self.studio(state)
        preset = _preset(quality)
        n = int(frames or 8)
        with user_errors("interpolating"):
            a = studio.encode_photo(
                load_photo(photo_a),
                T_inv=preset.T_inv,
                cache=state.cache,
                progress=_progress_callback(progress, span=0.25) if progress is not None else None,
            )
            b = studio.encode_photo(
                load_photo(photo_b),
                T_inv=preset.T_inv,
                cache=state.cache,
                progress=_progress_callback(progress, start=0.25, span=0.25)
                if progress is not None
                else None,
            )
            images = studio.interpolate(
                a,
                b,
                n,
                T_render=preset.T_render,
                progress=_progress_callback(progress, start=0.5, span=0.5)
                if progress is not None
                else None,
            )
            folder = state.output_dir("interpolation")
            strip_path = folder / "interpolation-strip.png"
            write_strip(images, strip_path)
            gif_path = write_gif(images, folder / "interpolation.gif", bounce=True)
        return {"interp_strip": str(strip_path), "interp_gif": str(gif_path)}

    # ------------------------------------------------------------------ custom attributes

    def on_custom(
        self,
        positives: Sequence[Any] | None,
        negatives: Sequence[Any] | None,
        name: str | None,
        aligned: bool,
        mode: str,
        state: UserState,
        progress: Any = None,
    ) -> Outputs:
        state = self._state(state)
        studio = self.studio(state)
        name = (name or "").strip()
        if not name:
            raise gr.Error("give the new attribute a name", print_exception=False)
        pos = [_file_path(f) for f in positives or []]
        neg = [_file_path(f) for f in negatives or []]
        if progress is not None:
            progress(0.1, desc=f"encoding {len(pos) + len(neg)} example faces")
        pos_codes, skipped = self._example_codes(studio, pos, bool(aligned), "with")
        neg_codes, skipped_neg = self._example_codes(studio, neg, bool(aligned), "without")
        skipped += skipped_neg
        for kind, codes in (("with", pos_codes), ("without", neg_codes)):
            if len(codes) < MIN_CUSTOM_EXAMPLES:
                raise gr.Error(
                    f"need at least {MIN_CUSTOM_EXAMPLES} usable photos {kind} the attribute, "
                    f"got {len(codes)}" + (f" (skipped {'; '.join(skipped)})" if skipped else ""),
                    print_exception=False,
                )
        if skipped:
            gr.Warning(f"skipped {len(skipped)} unusable photo(s): {'; '.join(skipped)}")
        with user_errors("training the custom attribute"):
            classifier = studio.custom_attribute(pos_codes, neg_codes, name)
            custom = tuple(c for c in state.custom if name not in c.attribute_names)
            custom = (*custom, classifier)[-_custom_capacity(self.bank) :]
            path = state.output_dir(f"custom-{_safe(name)}") / f"{_safe(name)}.safetensors"
            classifier.save(path)
        state = state.replace(
            custom=custom,
            slots=self.bank.assign(
                studio.attribute_names, tuple(n for c in custom for n in c.attribute_names)
            ),
        )
        accuracy = classifier.metrics.get(name, {}).get("train_accuracy")
        out: Outputs = {
            "state": state,
            "custom_status": f"Added the slider **{attribute_label(name)}** to the Edit tab "
            f"(group 'Custom'; {len(pos_codes)} with, {len(neg_codes)} without"
            + (f", skipped {len(skipped)} unusable" if skipped else "")
            + (f", training accuracy {accuracy:.0%}" if accuracy is not None else "")
            + "). It lasts for this session; download the artefact to keep it.",
            "custom_file": str(path),
        }
        with user_errors("reading the attributes"):
            before = self._before(studio, state)
        out.update(self.slider_updates(state, mode, before))
        if state.session is not None:
            out["chart"] = probability_chart_html(before)
        return out

    def _example_codes(
        self, studio: Any, paths: Sequence[str], aligned: bool, kind: str
    ) -> tuple[list[Any], list[str]]:
        """z_sem of each usable example, and 'name: why' for each skipped one."""
        codes, skipped = [], []
        for path in paths:
            try:
                with user_errors(f"encoding an example {kind} the attribute"):
                    codes.append(studio.semantic_codes([load_photo(path)], aligned=aligned)[0])
            except gr.Error as error:
                skipped.append(f"{_display_name(path)} ({error.message})")
        return codes, skipped

    # ------------------------------------------------------------------ model selector

    def on_load_model(
        self, spec: str | None, mode: str, state: UserState, progress: Any = None
    ) -> Outputs:
        state = self._state(state)
        spec = (spec or "").strip() or self.models.default_spec
        if progress is not None:
            progress(0.2, desc=f"loading {spec}")
        try:
            with user_errors("loading the model"):
                studio = self.models.get(spec, owner=state.uid)
        except gr.Error as error:
            # Raising would mark every output of this event as failed (red badges over the
            # whole page) and leave the selector on a model that is not loaded. Say why once,
            # and keep the session on its model, face and edit, fully usable.
            gr.Warning(error.message)
            current = self.studio(state)
            return {
                "model_choice": gr.update(value=state.model or self.models.default_spec),
                "status": f"⚠️ {error.message.rstrip('.')}. This session keeps the model "
                f"**{current.model_id}**.",
            }
        state = UserState(
            uid=state.uid,
            cache=state.cache,
            model="" if spec == self.models.default_spec else spec,
            slots=self.bank.assign(studio.attribute_names),
        )
        dropped = self.bank.unplaced(state.slots, studio.attribute_names)
        if dropped:
            gr.Warning(f"no room for {len(dropped)} sliders: {', '.join(dropped)}")
        out: Outputs = {
            "state": state,
            "header": describe(studio, spec),
            "model_choice": gr.update(choices=self.models.choices_for(spec), value=spec),
            "crop": None,
            "recon": None,
            "quality_md": "",
            "chart": probability_chart_html({}),
            "faces_view": gr.update(visible=False, value=None),
            "face_pick": gr.update(visible=False, choices=[], value=None),
            "status": f"Model **{studio.model_id}** loaded for this session; upload a photo.",
            "dl_encoding": gr.update(value=None, interactive=False),
            **self._clear_results(),
        }
        out.update(self.slider_updates(state, mode, {}))
        return out

    # ------------------------------------------------------------------ API-only endpoints

    def api_encode(
        self,
        photo: str | None,
        face_index: float | None,
        quality: str | None,
        aligned: bool,
        state: UserState,
        progress: Any = None,
    ) -> Outputs:
        """/encode: the face is kept in this client's session for /edit and /attributes."""
        state, studio = self.encode(
            photo,
            bool(aligned),
            quality,
            self._state(state),
            face_index=int(face_index or 0),
            progress=progress,
        )
        with user_errors("encoding the face"):
            recon = studio.reconstruct(state.session, T_render=_preset(quality).T_render)
            value = psnr(state.session.crop, recon.crop)
            before = self._before(studio, state)
        state = state.replace(psnr=value)
        info = {
            "model": studio.model_id,
            "image_size": state.session.image_size,
            "num_faces": state.session.num_faces,
            "face_index": state.session.face_index,
            "faces": [list(box) for box in state.faces],
            "psnr_db": value if math.isfinite(value) else None,
            "T_inv": state.session.T_inv,
            "detector": detector_name(state.session),
            "probabilities": before,
        }
        return {
            "state": state,
            "api_crop": state.session.crop,
            "api_recon": recon.crop,
            "api_info": info,
        }

    def api_edit(
        self,
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
        state = self._state(state)
        if state.session is None:
            raise gr.Error(
                "no face encoded in this session: call /encode first", print_exception=False
            )
        studio = self.studio(state)
        with user_errors("reading the edit"):
            strengths = _mapping(strengths, "strengths")
            targets = _mapping(targets, "targets")
            locks = tuple(_names(locks))
        seed_value = None if seed is None or seed < 0 else int(seed)
        result = self._render(
            studio,
            state,
            strengths,
            targets,
            locks,
            _preset(quality).T_render,
            seed_value,
            progress,
            paste,
        )
        files = self.write_result(state, result)
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

    def api_attributes(self, state: UserState) -> Outputs:
        """/attributes: the slider set (with groups) and, once a face is encoded, its
        probabilities."""
        state = self._state(state)
        studio = self.studio(state)
        names = [*studio.attribute_names, *state.custom_names]
        with user_errors("reading the attributes"):
            before = self._before(studio, state)
        from .layout import attribute_group

        return {
            "api_attributes": {
                "model": studio.model_id,
                "attributes": [
                    {
                        "name": n,
                        "group": "custom" if n in state.custom_names else attribute_group(n),
                        "probability": before.get(n),
                    }
                    for n in names
                ],
                "face_encoded": state.session is not None,
            }
        }


# --------------------------------------------------------------------------- small helpers


def _overview(
    photo: Image.Image, boxes: Sequence[tuple[float, float, float, float]]
) -> tuple[Image.Image, list[tuple[int, int, int, int]]]:
    """The photo reduced for display, with the face boxes scaled to it (and numbered)."""
    scale = min(1.0, _OVERVIEW_SIDE / max(photo.size))
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


def _face_index(choice: Any, count: int) -> int:
    """'Face 2' -> 1 (the picker's labels count from 1)."""
    try:
        index = int(str(choice).split()[-1]) - 1
    except (ValueError, IndexError):
        raise gr.Error(f"unknown face {choice!r}", print_exception=False) from None
    if not 0 <= index < max(1, count):
        raise gr.Error(f"there is no {choice} in this photo", print_exception=False)
    return index


def _original(state: UserState) -> Image.Image | str:
    return state.photo_file or state.session.photo


def _edit_summary(result: Any, targets: dict[str, float], locks: Sequence[str], steps: int) -> str:
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


def _write_text(path: Any, text: str) -> str:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return str(path)


def _file_path(item: Any) -> str:
    return item if isinstance(item, str) else str(getattr(item, "name", item))


def _display_name(path: str) -> str:
    """The uploaded file's name as the user knows it (Gradio keeps it in its cache path)."""
    return html.escape(Path(path).name, quote=False)


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)[:64] or "attribute"


def _custom_capacity(bank: SliderBank) -> int:
    return max(1, len(bank.group_indices("custom")))


def _mapping(value: Any, what: str) -> dict[str, float]:
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


def _names(value: Any) -> list[str]:
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
