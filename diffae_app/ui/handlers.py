"""The studio's event handlers, one object per app: :class:`Handlers`.

Every handler takes plain values (file paths, numbers, the user's :class:`UserState`) and
returns (or yields) a ``dict`` keyed by *component names* (``"crop"``, ``"slot3"``,
``"locks:hair"``...); ``ui/wiring.py`` maps those names onto the Gradio components. So the
handlers can be called directly in tests, and no tensor math happens here: everything goes
through :class:`~diffae_app.pipeline.Studio`.

Each handler lives in the module of its concern and reads parse -> studio -> format:
``encoding`` (photos, face picks, quality), ``rendering`` (slider edits), ``sliders`` (mode,
Reset), ``sampling`` (random faces, interpolation), ``custom`` and ``saved`` (custom
attributes), ``model_switch`` and ``api`` (the API-only endpoints). This class binds them to
one app's models and slider layout. Errors become one-line toasts (``errors.user_errors``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from diffae_app.paste import DEFAULT_PASTE

from . import api, custom, encoding, model_switch, rendering, sampling, saved, sliders
from .context import UiContext
from .errors import user_errors
from .readouts import crop_caption, detector_name, psnr
from .requests import load_photo
from .requests import progress_callback as _progress_callback
from .sliders import MODES, STRENGTH_RANGE, STRENGTH_STEP, TARGET_STEP
from .state import UserState

__all__ = [
    "MODES",
    "STRENGTH_RANGE",
    "STRENGTH_STEP",
    "TARGET_STEP",
    "Handlers",
    "_progress_callback",
    "crop_caption",
    "detector_name",
    "load_photo",
    "psnr",
    "user_errors",
]

Outputs = dict[str, Any]


class Handlers(UiContext):
    """All handlers of one app, bound to its model registry and slider layout."""

    # ---- the Edit tab
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
        return encoding.encode(
            self, photo, aligned, quality, state, face_index=face_index, progress=progress
        )

    def on_photo(
        self,
        photo: str | None,
        aligned: bool,
        quality: str | None,
        mode: str,
        state: UserState,
        progress: Any = None,
    ) -> Outputs:
        return encoding.on_photo(self, photo, aligned, quality, mode, state, progress)

    def on_face_or_quality(
        self,
        quality: str | None,
        mode: str,
        state: UserState,
        progress: Any = None,
        *,
        face_choice: str | None = None,
    ) -> Outputs:
        return encoding.on_face_or_quality(
            self, quality, mode, state, progress, face_choice=face_choice
        )

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
        return encoding.session_outputs(
            self, studio, state, mode, quality, progress, progress_start=progress_start
        )

    def slider_updates(self, state: UserState, mode: str, before: dict[str, float]) -> Outputs:
        return sliders.slider_updates(self, state, mode, before)

    def edit_request(
        self, state: UserState, mode: str, locks: Sequence[str], values: Sequence[float | None]
    ) -> tuple:
        return sliders.edit_request(self, state, mode, locks, values)

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
        return rendering.on_render(
            self, state, mode, quality, seed, locks, values, progress, paste=paste
        )

    def on_slider_moving(self, state: UserState) -> None:
        rendering.on_slider_moving(state)

    def on_mode(self, mode: str, state: UserState) -> Outputs:
        return sliders.on_mode(self, mode, state)

    def on_reset(self, mode: str, state: UserState) -> Outputs:
        return sliders.on_reset(self, mode, state)

    # ---- other tabs
    def on_sample(
        self,
        seed: float | None,
        count: float | None,
        quality: str | None,
        state: UserState,
        progress: Any = None,
    ) -> Outputs:
        return sampling.on_sample(self, seed, count, quality, state, progress)

    def on_sample_select(self, index: int | None, state: UserState) -> Outputs:
        return sampling.on_sample_select(self, index, state)

    def on_send_to_edit(
        self, quality: str | None, mode: str, state: UserState, progress: Any = None
    ) -> Outputs:
        return sampling.on_send_to_edit(self, quality, mode, state, progress)

    def on_interpolate(
        self,
        photo_a: str | None,
        photo_b: str | None,
        frames: float | None,
        quality: str | None,
        state: UserState,
        progress: Any = None,
    ) -> Outputs:
        return sampling.on_interpolate(self, photo_a, photo_b, frames, quality, state, progress)

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
        return custom.on_custom(self, positives, negatives, name, aligned, mode, state, progress)

    def on_show_saved(self, state: UserState) -> Any:
        return saved.on_show(self, state)

    def on_add_saved(self, picked: Sequence[str] | None, mode: str, state: UserState) -> Outputs:
        return saved.on_add(self, picked, mode, state)

    def on_load_model(
        self, spec: str | None, mode: str, state: UserState, progress: Any = None
    ) -> Outputs:
        return model_switch.on_load_model(self, spec, mode, state, progress)

    # ---- API-only endpoints
    def api_encode(
        self,
        photo: str | None,
        face_index: float | None,
        quality: str | None,
        aligned: bool,
        state: UserState,
        progress: Any = None,
    ) -> Outputs:
        return api.api_encode(self, photo, face_index, quality, aligned, state, progress)

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
        return api.api_edit(
            self, strengths, locks, targets, quality, seed, state, progress, paste=paste
        )

    def api_attributes(self, state: UserState) -> Outputs:
        return api.api_attributes(self, state)
