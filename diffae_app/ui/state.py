"""Per-user state of the studio, kept in ``gr.State`` (on the CPU, never on the shared model).

A :class:`UserState` is immutable: every handler returns a new one (``dataclasses.replace``),
so a slow render can never write a stale value over a newer upload. The user's own encoding
cache travels with it (the shared model caches nothing of anyone). The files a user can
download live in a private folder per browser session, inside a folder made for this process
by ``tempfile.mkdtemp`` (mode 0700, unpredictable name); both go when Gradio drops the state.
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import itertools
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diffae_app.encoding_cache import EncodingCache

from .streaming import LatestRender

_counter = itertools.count()


@functools.cache
def output_root() -> Path:
    """This process's private folder for users' result files: made on first use with
    ``tempfile.mkdtemp`` (mode 0700, a random name, so no other local user can read it or
    plant a link there beforehand) and removed when the process exits."""
    root = Path(tempfile.mkdtemp(prefix="diffae-studio-outputs-"))
    atexit.register(shutil.rmtree, root, True)
    return root


@dataclass(frozen=True, eq=False)
class UserState:
    """What one browser tab (or one API client) has done so far.

    Attributes:
        uid: random id of this session; names its output folder.
        model: spec of the model this session uses ('' = the server's default).
        session: the encoded face being edited (a studio ``Session``, CPU tensors), or None.
        faces: boxes ``(left, top, right, bottom)`` of the faces found in the photo.
        slots: attribute name driven by each slider slot (see ``layout.SliderBank``).
        custom: custom attributes trained in this session (``AttributeClassifier``s).
        samples: the last random faces (studio ``Session``s), for 'send to Edit'.
        selected_sample: index of the random face picked in the gallery.
        psnr: reconstruction quality of the current face (dB), None before encoding.
        photo_file: the photo as a file, the 'before' side of the before/after view.
        cache: this user's encodings and detections (re-uploads and face picks are free);
            shared by the states one session derives, never by two sessions.
        recon_files: the unedited reconstruction's files (``png``: pasted back into the
            photo, ``crop``, ``recipe``), what the edit view shows before any edit and
            after Reset.
        recon_probabilities: attribute probabilities measured on the reconstruction.
        renders: this user's render tickets: a newer render (or a slider starting to move)
            makes the one in flight stop at its next step (``streaming.LatestRender``).
    """

    uid: str = field(default_factory=lambda: uuid.uuid4().hex)
    model: str = ""
    session: Any = None
    faces: tuple[tuple[float, float, float, float], ...] = ()
    slots: tuple[str | None, ...] = ()
    custom: tuple[Any, ...] = ()
    samples: tuple[Any, ...] = ()
    selected_sample: int = 0
    psnr: float | None = None
    photo_file: str | None = None
    cache: EncodingCache = field(default_factory=EncodingCache, repr=False)
    recon_files: dict[str, str] | None = None
    recon_probabilities: dict[str, float] | None = None
    renders: LatestRender = field(default_factory=LatestRender, repr=False)

    def replace(self, **changes: Any) -> UserState:
        return dataclasses.replace(self, **changes)

    @property
    def custom_names(self) -> tuple[str, ...]:
        return tuple(n for c in self.custom for n in c.attribute_names)

    def output_dir(self, kind: str) -> Path:
        """A new empty folder for one result's files. Older results of the same kind are
        removed, except the newest (Gradio copies returned files into its own cache, but a
        concurrent request of this session may still be returning it)."""
        base = output_root() / self.uid
        base.mkdir(mode=0o700, exist_ok=True)
        older = sorted(base.glob(f"{kind}-*"), key=lambda p: int(p.name.rsplit("-", 1)[1]))
        for old in older[:-1]:
            shutil.rmtree(old, ignore_errors=True)
        folder = base / f"{kind}-{next(_counter)}"
        folder.mkdir(mode=0o700)
        return folder


def delete_outputs(state: Any) -> None:
    """``gr.State`` delete callback: remove the session's output folder and forget its
    encodings (so nothing of the user's photo stays referenced)."""
    if isinstance(state, UserState):
        state.cache.clear()
        shutil.rmtree(output_root() / state.uid, ignore_errors=True)
