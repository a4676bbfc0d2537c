"""Streaming renders in the app: previews as the face forms, ETA, cancellation (ui/streaming.py)."""

from __future__ import annotations

import threading
from copy import deepcopy

import pytest

from diffae_app.data.synthfaces import ATTRIBUTES as SYNTHFACES_ATTRIBUTES
from diffae_app.progress import Cancelled
from diffae_app.studio import Studio
from diffae_app.ui.handlers import MODES, Handlers
from diffae_app.ui.layout import SliderBank
from diffae_app.ui.models import ModelRegistry
from diffae_app.ui.streaming import LatestRender, stream

from .test_app_fixtures import EXAMPLES, app_model

pytestmark = pytest.mark.usefixtures("single_thread")


def _fake_render(steps: int, started: threading.Event | None = None, gate=None):
    """A stand-in for Studio.render: one preview and one progress call per step."""
    done: list[int] = []

    def work(*, preview, progress, cancel):
        for step in range(1, steps + 1):
            if gate is not None:
                gate(step)
            progress(step, steps, "rendering")
            preview(f"image {step}", step, steps)
            done.append(step)
            if cancel():
                raise Cancelled(f"stopped after {step} of {steps} steps")
        return "final"

    return work, done


def test_stream_yields_progress_previews_then_the_result() -> None:
    work, _ = _fake_render(3)
    events = list(stream(work))
    assert events[-1] == ("result", "final")
    assert [v[0] for k, v in events if k == "preview"] == ["image 1", "image 2", "image 3"]
    assert [v[:2] for k, v in events if k == "progress"] == [(1, 3), (2, 3), (3, 3)]


def test_stream_raises_the_works_error_in_the_caller() -> None:
    def work(**_):
        raise ValueError("bad strengths")

    with pytest.raises(ValueError, match="bad strengths"):
        list(stream(work))


def test_a_newer_ticket_or_closing_the_stream_cancels_the_work() -> None:
    tickets = LatestRender()
    stale = tickets.take()
    assert not stale()
    newer = tickets.take()
    assert stale() and not newer()
    tickets.supersede()
    assert newer()
    # gr.State deep-copies its default per session: a copy has its own, independent tickets.
    copy = deepcopy(tickets)
    assert isinstance(copy, LatestRender) and copy is not tickets
    copied = copy.take()
    tickets.supersede()
    assert not copied()

    release = threading.Event()
    work, done = _fake_render(50, gate=lambda step: step > 2 and release.wait(5))
    events = stream(work)
    assert next(events)[0] == "progress"
    events.close()  # Gradio cancelled the event: the worker stops at its next step
    release.set()
    for _ in range(500):  # the worker finishes its step 3, sees the cancel and stops
        if len(done) == 3:
            break
        threading.Event().wait(0.01)
    threading.Event().wait(0.1)
    assert done == [1, 2, 3]


@pytest.fixture(scope="module")
def handlers(tmp_path_factory: pytest.TempPathFactory) -> Handlers:
    model_dir = app_model(tmp_path_factory.mktemp("model"), prefer="tiny")
    registry = ModelRegistry(lambda spec: Studio.load(spec, device="cpu"), model_dir)
    studio = registry.default
    return Handlers(registry, SliderBank([*studio.attribute_names, *SYNTHFACES_ATTRIBUTES]))


def test_a_slider_moving_stops_the_render_in_flight(handlers: Handlers) -> None:
    state = handlers.on_photo(
        str(EXAMPLES / "face_a.png"), True, "preview", MODES[0], handlers.new_state()
    )["state"]
    slots = [0.5 if name else 0.0 for name in state.slots]
    outputs = handlers.on_render(state, MODES[0], "best", -1, [], slots)
    first = next(outputs)
    assert first["status"].startswith("Rendering: step 2 of")
    assert "dl_png" not in first
    handlers.on_slider_moving(state)  # the user grabs a slider again
    rest = list(outputs)
    assert all("dl_png" not in out for out in rest)  # no stale final image reaches the page
    # Without the move the same render runs to its final image.
    final = list(handlers.on_render(state, MODES[0], "preview", -1, [], slots))[-1]
    assert "dl_png" in final


def test_progress_bars_show_the_time_left() -> None:
    from diffae_app.ui.handlers import _progress_callback

    seen: list[tuple[float, str]] = []
    report = _progress_callback(lambda fraction, desc: seen.append((fraction, desc)))
    report(1, 4, "inverting (DDIM)")
    report(4, 4, "encoded")
    assert seen[0][0] == 0.25 and seen[0][1].startswith("inverting (DDIM) · about ")
    assert seen[0][1].endswith(" left")
    assert seen[1] == (1.0, "encoded")
