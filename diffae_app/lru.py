"""The project's one least-recently-used map: a user's encoded faces, the app's loaded models.

``functools.lru_cache`` does not fit either use: the caches are filled by the caller (a value
is computed under other locks, or not at all), bounded by weight as well as count, and emptied
selectively (a user's session ends).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

__all__ = ["LRU"]


class LRU:
    """A small thread-safe LRU map (Gradio runs handlers in worker threads).

    Bounded by a number of entries and, when ``weigh`` is given, by their total weight (e.g.
    bytes): the newest entry is always kept, older ones go first. ``size <= 0`` keeps nothing.

    Args:
        size: entries kept at most.
        max_weight: total weight kept at most (needs ``weigh``).
        weigh: value -> its weight.
        on_evict: called with (key, value) for each entry dropped to make room.
    """

    def __init__(
        self,
        size: int,
        *,
        max_weight: int | None = None,
        weigh: Callable[[Any], int] | None = None,
        on_evict: Callable[[Hashable, Any], None] | None = None,
    ) -> None:
        self.size = size
        self.max_weight = max_weight
        self._weigh = weigh
        self._on_evict = on_evict
        self._weights: dict[Hashable, int] = {}
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any:
        """The value under ``key`` (now the most recently used), or None."""
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: Hashable, value: Any) -> None:
        """Store ``value`` as the most recently used entry, dropping the oldest beyond the bounds."""
        if self.size <= 0:
            return
        evicted = []
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            if self._weigh is not None:
                self._weights[key] = self._weigh(value)
            while len(self._items) > self.size or (
                self.max_weight is not None
                and len(self._items) > 1
                and sum(self._weights.values()) > self.max_weight
            ):
                old, dropped = self._items.popitem(last=False)
                self._weights.pop(old, None)
                evicted.append((old, dropped))
        if self._on_evict is not None:
            for old, dropped in evicted:
                self._on_evict(old, dropped)

    def pop(self, key: Hashable) -> Any:
        """Remove ``key``; its value, or None when it was not there."""
        with self._lock:
            self._weights.pop(key, None)
            return self._items.pop(key, None)

    def keys(self) -> list[Hashable]:
        """The keys, least recently used first (a snapshot)."""
        with self._lock:
            return list(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._weights.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
