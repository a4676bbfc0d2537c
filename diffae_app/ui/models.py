"""Which model serves which session: a small registry of loaded studios.

The start-up model (``DIFFAE_MODEL``, default the bundled SynthFaces-64) is loaded once, before
the first request, and never evicted. A user may switch *their session* to another model from
the model selector; such models are loaded on first use, shared by every session that picks
them, and the least recently used one is dropped when more than ``max_loaded`` are resident.
Per-user data never lives here: a session stores only the spec of its model.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

BUNDLED_SPECS = ("default",)

FFHQ_HELP = (
    "To edit real photos, load the official FFHQ256 model: convert the released checkpoints "
    "with `python -m diffae_app convert checkpoints/ models/ffhq256` and start the app with "
    "`DIFFAE_MODEL=models/ffhq256 python app.py` (or type the folder or a Hub repo id into the "
    "model selector)."
)


def load_startup_model(loader: Callable[[str], Any], spec: str) -> tuple[str, Any, str]:
    """Load the start-up model: ``(spec used, studio, notice)``.

    A model that cannot be loaded (missing folder, wrong files, offline Hub id) falls back to
    the bundled one with a notice for the header, so the app still starts and says why.

    Raises:
        SystemExit: not even the bundled model can be loaded (one line, no traceback).
    """
    try:
        return spec, loader(spec), ""
    except (ValueError, OSError, RuntimeError) as error:
        problem = " ".join(str(error).split())
        if is_bundled(spec):
            raise SystemExit(f"error: cannot load the bundled model: {problem}") from None
    logger.warning("cannot load model %s (%s); falling back to the bundled model", spec, problem)
    try:
        studio = loader(BUNDLED_SPECS[0])
    except (ValueError, OSError, RuntimeError) as error:
        raise SystemExit(
            f"error: cannot load model {spec}: {problem}; and the bundled model failed too: "
            + " ".join(str(error).split())
        ) from None
    return (
        BUNDLED_SPECS[0],
        studio,
        f"Could not load the model `{spec}`: {problem}. Using the bundled model instead.",
    )


def is_bundled(spec: str) -> bool:
    """Whether ``spec`` names the bundled demonstration model."""
    if spec in BUNDLED_SPECS:
        return True
    try:
        from diffae_app.pipeline import DEFAULT_MODEL_DIR

        return Path(spec).resolve() == DEFAULT_MODEL_DIR.resolve()
    except (OSError, ValueError):
        return False


def describe(studio: Any, spec: str, notice: str = "") -> str:
    """One Markdown paragraph for the header: which model is active, on what."""
    names = getattr(studio, "attribute_names", ())
    parts = [
        f"{studio.image_size} px",
        f"{len(names)} attribute sliders" if names else "no attribute classifier",
        "random faces" if getattr(studio, "has_latent_dpm", False) else "no random faces",
        f"on {str(studio.device).upper()}",
        _precision_text(studio),
    ]
    text = f"**Model:** `{studio.model_id}` ({', '.join(parts)})"
    if is_bundled(spec):
        text += (
            "  \n<span class='demo-note'>This is the bundled **demonstration model**, trained on "
            "drawn *SynthFaces* so it works offline: it edits cartoon-like faces, not photographs "
            f"faithfully. {FFHQ_HELP}</span>"
        )
    if notice:
        text = f"⚠️ {notice}  \n" + text
    return text


def _precision_text(studio: Any) -> str:
    """'bfloat16, chosen at start-up: <why>' for "auto", else the precision as given."""
    choice = getattr(studio, "precision_choice", None)
    if choice is not None:
        return f"{choice.precision}, chosen at start-up: {choice.reason.split(': ', 1)[-1]}"
    return str(getattr(studio, "precision", "float32"))


class ModelRegistry:
    """Loaded studios by model spec; thread-safe.

    Args:
        loader: ``spec -> Studio`` (``Studio.load`` with the server's device and precision).
        default_spec: the start-up model; loaded now, pinned.
        choices: extra specs offered in the selector.
        allow_custom: whether users may type specs that are not in ``choices``.
        max_loaded: resident models at most (the default one included).
        default_studio: the default model, when the caller loaded it already.
        notice: a line for the header (e.g. "could not load X; using the bundled model").
    """

    def __init__(
        self,
        loader: Callable[[str], Any],
        default_spec: str,
        *,
        choices: tuple[str, ...] = (),
        allow_custom: bool = True,
        max_loaded: int = 2,
        default_studio: Any = None,
        notice: str = "",
    ) -> None:
        self._loader = loader
        self.notice = notice  # shown in the header, e.g. why the requested model was not used
        self.default_spec = default_spec
        self.allow_custom = allow_custom
        self.max_loaded = max(1, max_loaded)
        self.choices: tuple[str, ...] = tuple(dict.fromkeys((default_spec, *choices)))
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}
        self._default = default_studio if default_studio is not None else loader(default_spec)
        self._others: OrderedDict[str, Any] = OrderedDict()

    @property
    def default(self) -> Any:
        return self._default

    def get(self, spec: str | None) -> Any:
        """The studio for ``spec`` (loading it if needed).

        Raises:
            PermissionError: ``spec`` is not offered and custom models are not allowed.
            whatever the loader raises (CheckpointError, StudioError...).
        """
        spec = (spec or "").strip() or self.default_spec
        if spec == self.default_spec:
            return self._default
        with self._lock:
            if spec in self._others:
                self._others.move_to_end(spec)
                return self._others[spec]
            if spec not in self.choices and not self.allow_custom:
                raise PermissionError(
                    "loading other models is disabled on this server; pick one of: "
                    + ", ".join(self.choices)
                )
            per_spec = self._loading.setdefault(spec, threading.Lock())
        with per_spec:  # one load per spec at a time; others wait for it
            with self._lock:
                if spec in self._others:
                    return self._others[spec]
            logger.info("loading model %s", spec)
            studio = self._loader(spec)
            with self._lock:
                self._others[spec] = studio
                while len(self._others) > self.max_loaded - 1:
                    dropped, _ = self._others.popitem(last=False)
                    logger.info("unloading model %s", dropped)
                if spec not in self.choices:
                    self.choices = (*self.choices, spec)
            return studio

    def loaded(self) -> list[str]:
        with self._lock:
            return [self.default_spec, *self._others]
