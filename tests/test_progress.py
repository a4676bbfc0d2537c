"""Watching a render form: previews of the predicted x_0, ETA and cancellation (progress.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from diffae_app import DiffAE
from diffae_app.config import preset
from diffae_app.models import AutoencoderNet
from diffae_app.progress import Cancelled, Eta, preview_calls
from diffae_app.studio import Studio

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def studio() -> Studio:
    config = preset("tiny32").replace(latent_net=None)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = DiffAE(config, AutoencoderNet(config.autoencoder))
    return Studio(model, detector="dlib")


def test_preview_calls_start_early_and_skip_the_final_image() -> None:
    assert preview_calls(10) == {2, 4, 6, 8}
    assert preview_calls(20) == {2, 6, 10, 14, 18}
    for steps in (3, 5, 10, 20, 50, 250):
        calls = preview_calls(steps)
        assert min(calls) <= 3 and max(calls) < steps and len(calls) <= 6
    assert preview_calls(2) == frozenset() and preview_calls(1) == frozenset()


def test_render_streams_previews_of_the_forming_image_and_the_same_final(studio: Studio) -> None:
    session = studio.encode_aligned(Image.new("RGB", (32, 32), (200, 150, 120)), T_inv=4)
    seen: list[tuple[Image.Image, int, int]] = []
    streamed = studio.render(session, T_render=10, preview=lambda *a: seen.append(a))
    assert [(step, total) for _, step, total in seen] == [(2, 10), (4, 10), (6, 10), (8, 10)]
    assert all(image.size == (32, 32) and image.mode == "RGB" for image, _, _ in seen)
    # The estimate changes while the face forms, and streaming does not change the result.
    assert not np.array_equal(np.asarray(seen[0][0]), np.asarray(seen[-1][0]))
    plain = studio.render(session, T_render=10)
    assert np.array_equal(np.asarray(streamed.crop), np.asarray(plain.crop))


def test_cancel_stops_the_render_before_its_next_unet_call(studio: Studio) -> None:
    session = studio.encode_aligned(Image.new("RGB", (32, 32), (90, 120, 200)), T_inv=4)
    calls: list[int] = []
    hook = studio.model.autoencoder.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        with pytest.raises(Cancelled, match="after 3 of 10 steps"):
            studio.render(session, T_render=10, cancel=lambda: len(calls) >= 3)
    finally:
        hook.remove()
    assert len(calls) == 3


def test_eta_from_the_pace_so_far() -> None:
    now = [100.0]
    eta = Eta(clock=lambda: now[0])
    assert eta.text(0, 10) == "" and eta.seconds_left(0, 10) is None
    now[0] = 106.0
    assert eta.seconds_left(3, 10) == pytest.approx(14.0)
    assert eta.text(3, 10) == "about 14 s left"
    now[0] = 400.0
    assert eta.text(3, 10) == "about 11 min 40 s left"
