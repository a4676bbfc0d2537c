"""One user's cache of encoded faces and face detections.

The shared :class:`~diffae_app.studio.Studio` holds weights only. Whoever serves one user (a
browser session's ``gr.State``, a CLI run, a script) may keep an :class:`EncodingCache` and
pass it to ``Studio.encode_photo``/``encode_aligned``/``detect_faces``: re-uploads and face
picks of the same photo then skip the encoder and the inversion. Nothing in it is ever seen by
another cache, so one user can never learn from timing that another processed a photo, and
dropping the cache (or the object holding it) releases every photo it held.
"""

from __future__ import annotations

from typing import Any

from .lru import LRU

__all__ = ["DEFAULT_CACHE_BYTES", "EncodingCache", "session_bytes"]

DEFAULT_CACHE_BYTES = 256 * 2**20
"""Per user: the cached faces' photos and codes together stay under this many bytes."""


def session_bytes(session: Any) -> int:
    """Memory a cached encoded session holds: its photo and crop (RGB) and its codes."""
    pixels = session.photo.width * session.photo.height + session.crop.width * session.crop.height
    return 3 * pixels + 4 * (session.z_sem.numel() + session.x_T.numel())


class EncodingCache:
    """Encoded sessions and detected faces of ONE user, each an LRU of ``size`` entries.

    Keys hold the photo's pixel hash, the face, the model (id and weight fingerprint) and
    T_inv, so one cache serves a user who switches models or quality presets.

    Args:
        size: encodings (and, separately, detections) kept; each holds its photo, about
            3 bytes per pixel. A browser session needs few: the photo being edited, its
            other faces and the previous quality preset.
        max_bytes: the encodings' photos and codes together stay under this (the newest is
            always kept): four 50-Mpx uploads would otherwise hold 600 MB for one user.
    """

    def __init__(self, size: int = 4, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self.sessions = LRU(size, max_weight=max_bytes, weigh=session_bytes)
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
        return EncodingCache(self.sessions.size, self.max_bytes)
