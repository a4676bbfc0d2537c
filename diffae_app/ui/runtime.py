"""Server settings of the studio, all from the environment, with safe defaults.

Everything here is read once by ``app.py``; nothing imports torch.

=============================== =========================================================
``DIFFAE_MODEL``                model at start-up: ``default`` (bundled SynthFaces-64), a
                                bundle folder, an official checkpoint folder or ``.ckpt``, or
                                a Hugging Face Hub repo id (``owner/name``)
``DIFFAE_MODELS``               extra choices for the model selector, comma-separated
``DIFFAE_ALLOW_MODEL_LOADING``  ``1``: users may type any folder/repo id into the selector;
                                default on, except on a Hugging Face Space
``DIFFAE_DEVICE``               ``auto`` (CUDA, then MPS, then CPU), ``cpu``, ``cuda``...
``DIFFAE_PRECISION``            ``auto`` (default: bf16 where the hardware runs it natively
                                and it renders within 40 dB of float32, measured at
                                start-up), ``float32``, ``bfloat16``, ``float16``
``DIFFAE_CONCURRENCY``          renders running at once (default 2 on CPU, 1 on ZeroGPU)
``DIFFAE_QUEUE_SIZE``           waiting requests before new ones are refused (default 64)
``DIFFAE_SESSION_TTL``          seconds a browser session's state is kept (default 3600)
``GRADIO_SERVER_NAME``/``_PORT`` host and port (Gradio's own variables; 127.0.0.1:7860)
``GRADIO_ANALYTICS_ENABLED``    telemetry; this app sets it to ``False`` unless set
=============================== =========================================================
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_MODEL = "default"


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def on_spaces() -> bool:
    """True on a Hugging Face Space (the platform sets SPACE_ID)."""
    return bool(os.environ.get("SPACE_ID"))


def on_zero_gpu() -> bool:
    """True on a ZeroGPU Space (the platform sets SPACES_ZERO_GPU)."""
    return _truthy(os.environ.get("SPACES_ZERO_GPU"))


def disable_telemetry() -> None:
    """Analytics off unless the operator explicitly turned them on; same for HF telemetry.

    Must run before ``import gradio`` has a chance to start its version check.
    """
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


#: Allocations at least this large get their own mmap, returned to the OS when freed.
MMAP_THRESHOLD_BYTES = 1 << 20


def return_freed_memory_to_os() -> bool:
    """Make glibc give large freed buffers back to the OS (Linux; a no-op elsewhere).

    glibc raises its mmap threshold (up to 32 MB) each time a large buffer is freed, after
    which photo-sized buffers (a 8-Mpx RGB photo is 24 MB; detection and paste-back make
    several) come from the heap and stay resident after they are freed: measured on 16
    distinct 8-Mpx uploads, RSS grew 736 MB with the default and 460 MB with a fixed 1 MB
    threshold (the same as after an explicit ``malloc_trim``). Returns whether it was set.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    m_mmap_threshold = -3  # from <malloc.h>; setting it also stops the dynamic raise
    return bool(mallopt(m_mmap_threshold, MMAP_THRESHOLD_BYTES))


@dataclass(frozen=True)
class Settings:
    model: str
    extra_models: tuple[str, ...]
    allow_model_loading: bool
    device: str
    precision: str
    concurrency: int
    queue_size: int
    session_ttl: int
    # Uploads and outputs older than `cache_age` s are deleted every `cache_every` s.
    cache_every: int = 600
    cache_age: int = 3600
    max_upload: str = "50mb"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        allow = env.get("DIFFAE_ALLOW_MODEL_LOADING")
        default_concurrency = 1 if _truthy(env.get("SPACES_ZERO_GPU")) else 2
        return cls(
            model=env.get("DIFFAE_MODEL", "").strip() or DEFAULT_MODEL,
            extra_models=tuple(
                m.strip() for m in env.get("DIFFAE_MODELS", "").split(",") if m.strip()
            ),
            allow_model_loading=_truthy(allow) if allow is not None else not env.get("SPACE_ID"),
            device=env.get("DIFFAE_DEVICE", "auto").strip() or "auto",
            precision=env.get("DIFFAE_PRECISION", "auto").strip() or "auto",
            concurrency=_positive(env, "DIFFAE_CONCURRENCY", default_concurrency),
            queue_size=_positive(env, "DIFFAE_QUEUE_SIZE", 64),
            session_ttl=_positive(env, "DIFFAE_SESSION_TTL", 3600),
        )

    def queue_kwargs(self) -> dict[str, Any]:
        """Arguments of ``demo.queue``: always explicit (ZeroGPU's default max_size is 1)."""
        return {"default_concurrency_limit": self.concurrency, "max_size": self.queue_size}

    def launch_kwargs(self) -> dict[str, Any]:
        """Arguments of ``demo.launch``: host/port from GRADIO_SERVER_NAME/PORT (Gradio reads
        them itself when these are None), no share link, no run history (face photos are
        private), errors shown as toasts."""
        return {
            "server_name": os.environ.get("GRADIO_SERVER_NAME") or None,
            "server_port": int(os.environ["GRADIO_SERVER_PORT"])
            if os.environ.get("GRADIO_SERVER_PORT")
            else None,
            "share": False,
            "run_history": False,
            "show_error": False,
            "footer_links": ["api", "gradio", "settings"],
            # Larger uploads are refused by Gradio before they reach the app.
            "max_file_size": self.max_upload,
        }


def _positive(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a positive integer, got {raw!r}") from None
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {raw!r}")
    return value


def gpu(duration: int = 60) -> Callable[[F], F]:
    """``@spaces.GPU(duration=...)`` on a ZeroGPU Space; the function unchanged anywhere else
    (including when the ``spaces`` package is not installed)."""

    def decorate(fn: F) -> F:
        if not on_zero_gpu():
            return fn
        try:
            import spaces  # type: ignore[import-not-found]
        except ImportError:
            return fn
        return spaces.GPU(duration=duration)(fn)

    return decorate
