"""A studio render streamed to a Gradio generator: previews, progress with ETA, cancellation.

The render runs in a worker thread and posts what it has (preview images, progress steps, the
result) to a queue; the handler's generator yields them as they come, so Gradio shows the
face sharpening in place. Closing the generator (Gradio cancels the event) or a newer render
of the same user (:class:`LatestRender`) makes the render stop at its next step.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

from diffae_app.progress import CancelCheck

#: ``work(preview=..., progress=..., cancel=...)`` -> the result (e.g. a Studio.render call).
Work = Callable[..., Any]


class LatestRender:
    """Per-user render tickets: taking a new one, or `supersede`, makes older ones stale.

    Lives in the user's state, so a slider move of one user never cancels another's render.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest = 0

    def take(self) -> CancelCheck:
        """A check that turns True once a newer render was asked for."""
        with self._lock:
            self._latest += 1
            mine = self._latest
        return lambda: self._latest != mine

    def __deepcopy__(self, memo: dict) -> LatestRender:
        # Gradio deep-copies a gr.State's default for every new session: each gets its own
        # tickets (and a lock cannot be copied anyway).
        return LatestRender()

    def supersede(self) -> None:
        """Mark the render in flight stale (a slider is moving: its result would be old)."""
        with self._lock:
            self._latest += 1


def stream(work: Work, *, stale: CancelCheck = lambda: False) -> Iterator[tuple[str, Any]]:
    """Run `work` in a worker thread; yield ('progress', (step, total, message)),
    ('preview', (image, step, total)) as they happen, then ('result', value).

    An exception of `work` (including `progress.Cancelled`) is raised here. Leaving the loop
    early (the generator is closed) cancels the work at its next step.
    """
    events: queue.Queue[tuple[str, Any]] = queue.Queue()
    closed = threading.Event()

    def cancel() -> bool:
        return closed.is_set() or stale()

    def run() -> None:
        try:
            result = work(
                preview=lambda image, step, total: events.put(("preview", (image, step, total))),
                progress=lambda step, total, message: events.put(
                    ("progress", (step, total, message))
                ),
                cancel=cancel,
            )
            events.put(("result", result))
        except BaseException as exc:  # handed to the generator's thread and raised there
            events.put(("error", exc))

    worker = threading.Thread(target=run, name="diffae-render", daemon=True)
    worker.start()
    try:
        while True:
            kind, value = events.get()
            if kind == "error":
                raise value
            yield kind, value
            if kind == "result":
                return
    finally:
        closed.set()
