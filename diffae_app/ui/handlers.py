"""The studio's event handlers, one object per app: :class:`Handlers`.

Every handler takes plain values (file paths, numbers, the user's :class:`UserState`) and
returns (or yields) a ``dict`` keyed by *component names* (``"crop"``, ``"slot3"``,
``"locks:hair"``...); ``ui/wiring.py`` maps those names onto the Gradio components. So the
handlers can be called directly in tests, and no tensor math happens here: everything goes
through :class:`~diffae_app.studio.Studio`.

Each handler lives in the module of its concern and reads parse -> studio -> format:
``encoding`` (photos, face picks, quality), ``rendering`` (slider edits), ``sliders`` (mode,
Reset), ``sampling`` (random faces, interpolation), ``custom`` and ``saved`` (custom
attributes), ``model_switch`` and ``api`` (the API-only endpoints). This class binds them to
one app's models and slider layout. Errors become one-line toasts (``errors.user_errors``).
"""

from __future__ import annotations

from . import api, custom, encoding, model_switch, rendering, sampling, saved, sliders
from .context import UiContext
from .readouts import psnr
from .requests import progress_callback as _progress_callback
from .sliders import MODES

# Imported from here by tests and benchmarks.
__all__ = ["MODES", "Handlers", "_progress_callback", "psnr"]


class Handlers(UiContext):
    """All handlers of one app, bound to its model registry and slider layout.

    Each is the module function of its concern, taking this object as its ``ctx``.
    """

    # The Edit tab
    encode = encoding.encode
    on_photo = encoding.on_photo
    on_face_or_quality = encoding.on_face_or_quality
    session_outputs = encoding.session_outputs
    slider_updates = sliders.slider_updates
    edit_request = sliders.edit_request
    on_mode = sliders.on_mode
    on_reset = sliders.on_reset
    on_render = rendering.on_render
    on_slider_moving = staticmethod(rendering.on_slider_moving)
    # The other tabs
    on_sample = sampling.on_sample
    on_sample_select = sampling.on_sample_select
    on_send_to_edit = sampling.on_send_to_edit
    on_interpolate = sampling.on_interpolate
    on_custom = custom.on_custom
    on_show_saved = saved.on_show
    on_add_saved = saved.on_add
    on_load_model = model_switch.on_load_model
    # The API-only endpoints
    api_encode = api.api_encode
    api_edit = api.api_edit
    api_attributes = api.api_attributes
