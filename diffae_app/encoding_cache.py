"""One user's cache of encoded faces and face detections.

The shared :class:`~diffae_app.pipeline.Studio` holds weights only. Whoever serves one user (a
browser session's ``gr.State``, a CLI run, a script) may keep an :class:`EncodingCache` and
pass it to ``Studio.encode_photo``/``encode_aligned``/``detect_faces``: re-uploads and face
picks of the same photo then skip the encoder and the inversion. Nothing in it is ever seen by
another cache, so one user can never learn from timing that another processed a photo, and
dropping the cache (or the object holding it) releases every photo it held.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

__all__ = ["EncodingCache", "LRU"]


class LRU:
    """A small thread-safe LRU map (Gradio runs handlers in worker threads)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: Any, value: Any) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


class EncodingCache:
    """Encoded sessions and detected faces of ONE user, each an LRU of ``size`` entries.

    Keys hold the photo's pixel hash, the face, the model (id and weight fingerprint) and
    T_inv, so one cache serves a user who switches models or quality presets.

    Args:
        size: encodings (and, separately, detections) kept; each holds its photo, about
            3 bytes per pixel. A browser session needs few: the photo being edited, its
            other faces and the previous quality preset.
    """

    def __init__(self, size: int = 4) -> None:
        self.sessions = LRU(size)
        self.faces = LRU(size)

    def clear(self) -> None:
        """Forget everything (e.g. when the user's browser session expires)."""
        self.sessions.clear()
        self.faces.clear()

    def __len__(self) -> int:
        return len(self.sessions) + len(self.faces)

    def __deepcopy__(self, memo: dict) -> EncodingCache:
        # gr.State deep-copies initial values: a copy starts empty instead of duplicating
        # photos (and never shares the original's entries).
        return EncodingCache(self.sessions.size)
