"""Issue 13's side-effect promise on the bundled model and the project's real photos: an edit
of one attribute moves every *other* attribute's readout by at most 15 points.

The readout is what the app shows: "before" is the classifier on the photo's z_sem, "after" is
the rendered result encoded again and classified (``EditResult.probabilities_after``). Every
attribute is edited at its calibrated full strength (its slider reaches 1.5 times that), up
and down, on scikit-image's astronaut and matplotlib's Grace Hopper.

The committed bundle does not keep the promise yet (issue 13 is open). Measured on it
(2026-12-07, bf16, balanced preset, full strength): 54 of the 60 edits move some other readout
by more than 15 points (astronaut 26 of 30, Grace Hopper 28 of 30), the previous bundle 45 of
60; adding eyeglasses to the astronaut moves Pale_Skin by 96 points, and on Grace Hopper most
edits flip the Blond_Hair or Black_Hair readout. Real photos are far from the drawn faces this
model learnt, and even its smallest edits (Smiling -0.10) move a readout by 20 points. The test
is therefore a strict expected failure: it runs on every CI pass, and the day a bundle keeps the
promise it "unexpectedly passes", which fails the suite until this marker is removed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from matplotlib import cbook
from PIL import Image
from skimage import data as skimage_data

from diffae_app.imaging import load_image
from diffae_app.studio import Studio

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("single_thread")]

MAX_SIDE_EFFECT = 0.15  # probability points, issue 13


def _photos() -> dict[str, Image.Image]:
    return {
        "astronaut": Image.fromarray(skimage_data.astronaut()),
        "grace_hopper": load_image(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)),
    }


def side_effects(studio: Studio, photo: Image.Image) -> list[tuple[str, float, str, float]]:
    """(edited attribute, strength, most-moved other attribute, how far it moved) per edit."""
    session = studio.encode_photo(photo)
    before = studio.render(session, {}).probabilities_before
    rows = []
    for name in studio.attribute_names:
        full = studio.full_strengths[name]
        for strength in (full, -full):
            after = studio.render(session, {name: strength}).probabilities_after
            moved = {o: abs(after[o] - before[o]) for o in studio.attribute_names if o != name}
            worst = max(moved, key=moved.get)
            rows.append((name, strength, worst, moved[worst]))
    return rows


@pytest.mark.xfail(
    strict=True,
    reason="issue 13: the committed bundle moves other readouts by up to 100 points on real photos",
)
def test_one_edit_moves_no_other_readout_by_more_than_15_points(
    bundled_model_dir: Path,
) -> None:
    studio = Studio.load(str(bundled_model_dir), device="cpu", precision="bfloat16")
    assert studio.full_strengths, "the bundled model stores its calibrated full strengths"
    failures = [
        f"{photo_name}: {name} {strength:+.2f} moved {other} by {moved * 100:.0f} points"
        for photo_name, photo in _photos().items()
        for name, strength, other, moved in side_effects(studio, photo)
        if moved > MAX_SIDE_EFFECT
    ]
    assert not failures, "\n".join(failures)
