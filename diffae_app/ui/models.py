"""Which model serves which session: a small registry of loaded studios.

The start-up model (``DIFFAE_MODEL``, default the bundled SynthFaces-64) is loaded once, before
the first request, and never evicted. A user may switch *their session* to another model from
the model selector: one of the operator's allow-list (``DIFFAE_MODELS``), loaded on first use
and shared by the sessions that pick it, or, only where the server allows typed specs, a
folder or Hub id of their own. A typed model is that session's alone: it never joins the
selector's choices, another session typing the same spec loads its own copy (so nobody can
tell from speed what someone else loaded), and it is dropped when the session ends. Loading
errors for typed specs all read the same, so they never tell whether a path exists. The least
recently used model is dropped when more than ``max_loaded`` are resident. Per-user data
never lives here: a session stores only the spec of its model.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from diffae_app.lru import LRU

logger = logging.getLogger(__name__)

BUNDLED_SPECS = ("default",)

# ``owner/name@revision``: a Hub repo id with a pinned revision (branch, tag or commit).
_HUB_ID_AT_REVISION = re.compile(r"^([\w.-]+/[\w.-]+)@([\w./-]+)$")


class ModelUnavailable(ValueError):
    """A typed model spec could not be loaded (the message never says why: see the log)."""


def split_revision(spec: str) -> tuple[str, str | None]:
    """``"owner/name@abc123"`` -> ``("owner/name", "abc123")``; anything else -> ``(spec, None)``."""
    match = _HUB_ID_AT_REVISION.match(spec.strip())
    if match is None:
        return spec, None
    return match.group(1), match.group(2)


def studio_loader(
    load: Callable[..., Any],
    *,
    device: str,
    precision: str,
    model: str,
    revision: str | None,
) -> Callable[[str], Any]:
    """``spec -> Studio`` for the registry: ``load`` is ``Studio.load``.

    ``owner/name@rev`` loads that revision; the start-up ``model`` gets ``revision``
    (``DIFFAE_MODEL_REVISION``) unless its spec names one. An unpinned Hub id is logged, since
    its weights can change under the server.
    """

    def load_spec(spec: str) -> Any:
        name, pinned = split_revision(spec)
        if pinned is None and spec == model:
            pinned = revision
        if pinned is None and _HUB_ID_AT_REVISION.match(f"{name}@x") and not Path(name).exists():
            logger.warning("Hub model %s has no pinned revision; pin one with @<commit>", name)
        return load(name, revision=pinned, device=device, precision=precision)

    return load_spec


FFHQ_HELP = (
    "To edit real photos, load the official FFHQ256 model: convert the released checkpoints "
    "with `python -m diffae_app convert checkpoints/ models/ffhq256` and start the app with "
    "`DIFFAE_MODEL=models/ffhq256 python app.py` (or list it in `DIFFAE_MODELS` to offer it "
    "in the model selector)."
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
        from diffae_app.studio import DEFAULT_MODEL_DIR

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
        choices: the allow-list: extra specs offered in the selector, shared when loaded.
        allow_custom: whether users may type specs that are not in ``choices`` (each such
            model belongs to the session that typed it).
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
        allow_custom: bool = False,
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
        # Allow-listed models by spec; typed ones by (owner, spec), never shared.
        self._others = LRU(
            self.max_loaded - 1, on_evict=lambda key, _: logger.info("unloading model %s", key)
        )

    @property
    def default(self) -> Any:
        return self._default

    def offered(self, spec: str) -> bool:
        """Whether ``spec`` is the default model or on the allow-list."""
        return spec in self.choices

    def choices_for(self, spec: str | None) -> list[str]:
        """The selector's choices as one session sees them: the allow-list, plus the spec
        this session typed (seen by this session only)."""
        spec = (spec or "").strip()
        return [*self.choices, spec] if spec and spec not in self.choices else list(self.choices)

    def get(self, spec: str | None, *, owner: str = "") -> Any:
        """The studio for ``spec`` (loading it if needed).

        Args:
            spec: a model spec; empty means the default model.
            owner: the session asking (its uid); a typed model is kept for it alone.

        Raises:
            PermissionError: ``spec`` is not offered and custom models are not allowed.
            ModelUnavailable: a typed spec could not be loaded (one message for every cause).
            whatever the loader raises for an allow-listed spec (CheckpointError...).
        """
        spec = (spec or "").strip() or self.default_spec
        if spec == self.default_spec:
            return self._default
        offered = self.offered(spec)
        if not offered and not self.allow_custom:
            # Refused before anything looks at the file system.
            raise PermissionError(
                "loading other models is disabled on this server; pick one of: "
                + ", ".join(self.choices)
            )
        key: str | tuple[str, str] = spec if offered else (owner, spec)
        with self._lock:
            studio = self._others.get(key)
            if studio is not None:
                return studio
            per_key = self._loading.setdefault(key, threading.Lock())
        with per_key:  # one load per key at a time; others wait for it
            studio = self._others.get(key)
            if studio is not None:
                return studio
            logger.info("loading model %s", spec)
            if offered:
                studio = self._loader(spec)
            else:
                studio = self._load_typed(spec)
            with self._lock:
                self._others.put(key, studio)
                self._loading.pop(key, None)
            return studio

    def _load_typed(self, spec: str) -> Any:
        try:
            return self._loader(spec)
        except Exception as error:  # noqa: BLE001 - every cause must read the same
            logger.warning("cannot load typed model %s: %s", spec, " ".join(str(error).split()))
            raise ModelUnavailable(
                f"cannot load the model {spec!r}: this server found no bundle folder, official "
                "checkpoint or reachable Hub repo by that name that it can read"
            ) from None

    def release(self, owner: str) -> None:
        """Drop the models a session typed (its state expired)."""
        with self._lock:
            for key in [k for k in self._others.keys() if isinstance(k, tuple) and k[0] == owner]:
                self._others.pop(key)

    def loaded(self) -> list[str]:
        with self._lock:
            keys = self._others.keys()
            return [self.default_spec, *(k if isinstance(k, str) else k[1] for k in keys)]
