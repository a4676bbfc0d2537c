"""Server settings of the studio, all from the environment, with safe defaults.

Everything here is read once by ``app.py``; nothing imports torch (or ``spaces``, except
:func:`import_spaces_if_zero_gpu` on a ZeroGPU Space).

=============================== =========================================================
``DIFFAE_MODEL``                model at start-up: ``default`` (bundled SynthFaces-64), a
                                bundle folder, an official checkpoint folder or ``.ckpt``, or
                                a Hugging Face Hub repo id (``owner/name``)
``DIFFAE_MODEL_REVISION``       Hub revision of ``DIFFAE_MODEL`` (a commit hash pins it)
``DIFFAE_MODELS``               the allow-list: extra models users may pick, comma-separated
                                (``owner/name@commit`` pins a Hub model's revision)
``DIFFAE_ALLOW_MODEL_LOADING``  ``1``: users may also type any folder/repo id into the
                                selector; default on only for a loopback-only server (off
                                when bound beyond loopback, with ``GRADIO_SHARE``, on Spaces)
``DIFFAE_DEVICE``               ``auto`` (CUDA, then MPS, then CPU), ``cpu``, ``cuda``...
``DIFFAE_PRECISION``            ``float32`` (default), ``bfloat16``, ``float16``
``DIFFAE_CONCURRENCY``          renders running at once (default 2 on CPU, 1 on ZeroGPU)
``DIFFAE_QUEUE_SIZE``           waiting requests before new ones are refused (default 64)
``DIFFAE_SESSION_TTL``          seconds a browser session's state is kept (default 3600)
``GRADIO_SERVER_NAME``/``_PORT`` host and port (Gradio's own variables; 127.0.0.1:7860)
``GRADIO_SHARE``                ``1``: a public share link (then typed models are off)
``GRADIO_ANALYTICS_ENABLED``    telemetry; this app sets it to ``False`` unless set
=============================== =========================================================
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_MODEL = "default"


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def is_loopback(host: str | None) -> bool:
    """Whether a server bound to ``host`` is reachable from this machine only (None or empty:
    Gradio's default, 127.0.0.1)."""
    host = (host or "").strip().strip("[]")
    if not host or host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name other than localhost may resolve to anything
        return False


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


@dataclass(frozen=True)
class Settings:
    model: str
    extra_models: tuple[str, ...]
    # Whether users may type their own model specs: an open door to the server's files and
    # disk, so only where nobody but the local user can reach the server (see from_env).
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
    model_revision: str | None = None
    server_name: str | None = None
    share: bool = False

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        allow = env.get("DIFFAE_ALLOW_MODEL_LOADING")
        default_concurrency = 1 if _truthy(env.get("SPACES_ZERO_GPU")) else 2
        server_name = env.get("GRADIO_SERVER_NAME", "").strip() or None
        share = _truthy(env.get("GRADIO_SHARE"))
        private = is_loopback(server_name) and not share and not env.get("SPACE_ID")
        return cls(
            model=env.get("DIFFAE_MODEL", "").strip() or DEFAULT_MODEL,
            extra_models=tuple(
                m.strip() for m in env.get("DIFFAE_MODELS", "").split(",") if m.strip()
            ),
            allow_model_loading=_truthy(allow) if allow is not None else private,
            device=env.get("DIFFAE_DEVICE", "auto").strip() or "auto",
            precision=env.get("DIFFAE_PRECISION", "float32").strip() or "float32",
            concurrency=_positive(env, "DIFFAE_CONCURRENCY", default_concurrency),
            queue_size=_positive(env, "DIFFAE_QUEUE_SIZE", 64),
            session_ttl=_positive(env, "DIFFAE_SESSION_TTL", 3600),
            model_revision=env.get("DIFFAE_MODEL_REVISION", "").strip() or None,
            server_name=server_name,
            share=share,
        )

    def queue_kwargs(self) -> dict[str, Any]:
        """Arguments of ``demo.queue``: always explicit (ZeroGPU's default max_size is 1)."""
        return {"default_concurrency_limit": self.concurrency, "max_size": self.queue_size}

    def launch_kwargs(self) -> dict[str, Any]:
        """Arguments of ``demo.launch``: host/port from GRADIO_SERVER_NAME/PORT (Gradio reads
        them itself when these are None), a share link only with GRADIO_SHARE, no run
        history (face photos are private), errors shown as toasts."""
        return {
            "server_name": self.server_name,
            "server_port": int(os.environ["GRADIO_SERVER_PORT"])
            if os.environ.get("GRADIO_SERVER_PORT")
            else None,
            "share": self.share,
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


def import_spaces_if_zero_gpu() -> bool:
    """On a ZeroGPU Space, import ``spaces`` now; elsewhere do nothing. True if imported.

    ``spaces`` refuses to load once CUDA is initialised (a crash loop at start-up), because it
    has to patch torch first: afterwards ``torch.cuda.is_available()`` says True, the model's
    ``.to("cuda")`` at start-up is recorded (the weights stay on the CPU and are packed), and
    only calls inside ``@spaces.GPU`` functions run on a real GPU. ``app.py`` calls this
    before anything can touch CUDA (importing torch alone does not).

    Raises:
        SystemExit: ZeroGPU is on but ``spaces`` is not installed (one line: how to fix it).
    """
    if not on_zero_gpu():
        return False
    try:
        import spaces  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        raise SystemExit(
            "error: SPACES_ZERO_GPU is set but the `spaces` package is not installed; "
            "add `spaces` to requirements.txt (it is listed there in this repository)"
        ) from None
    return True


#: Seconds of GPU time asked for per call (ZeroGPU's ``duration``; a shorter request waits
#: less in its queue, a call that runs longer is cut off). The longest single call at 256 px is
#: a photo upload at "best" quality: encoder + 50 inversion + 10 preview + 50 render steps,
#: about 110 network evaluations, estimated at 2-5 s on ZeroGPU's H200 slice plus the weights'
#: first transfer and face detection; 30 s leaves a wide margin (not measured on a GPU yet).
RENDER_GPU_SECONDS = 30


def gpu(duration: int = RENDER_GPU_SECONDS) -> Callable[[F], F]:
    """``@spaces.GPU(duration=...)`` on a ZeroGPU Space; the function unchanged anywhere else.

    On ZeroGPU ``spaces`` must already be imported (:func:`import_spaces_if_zero_gpu`).
    """

    def decorate(fn: F) -> F:
        if not on_zero_gpu():
            return fn
        import spaces  # type: ignore[import-not-found]

        return spaces.GPU(duration=duration)(fn)

    return decorate
