"""Tests for diffae_app.paste and the Studio's paste-back modes ("change" and "render").

Real photos (scikit-image's astronaut, matplotlib's Grace Hopper) give the alignment; the
tiny random-weight bundle checks exactness, the bundled SynthFaces-64 model and the judge
check that an edit pasted back as a change still shows.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from diffae_app.align import DlibDetector, align_face, detect_faces, paste_mask
from diffae_app.data.synthfaces import ATTRIBUTES, HELDOUT_SEED_START, generate
from diffae_app.errors import RecipeError, StudioError
from diffae_app.evaluate import DEFAULT_JUDGE_DIR
from diffae_app.judge import images_to_tensor, load_judge
from diffae_app.paste import PASTE_MODES, check_paste_mode, detail_crop, paste_change
from diffae_app.session import Recipe
from diffae_app.studio import Studio

pytestmark = pytest.mark.usefixtures("single_thread")

T_INV, T_RENDER = 5, 4  # tiny step counts where only exactness is checked


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


# ------------------------------------------------------------------------------------------
# The maths alone


def test_a_zero_change_gives_the_photo_back_bit_for_bit(
    astronaut: Image.Image, detector: DlibDetector
) -> None:
    aligned = align_face(astronaut, detect_faces(astronaut, detector)[0], 64)
    zero = torch.zeros(1, 3, 64, 64)
    assert paste_change(astronaut, zero, aligned).tobytes() == astronaut.tobytes()
    assert paste_change(astronaut, zero, None).tobytes() == astronaut.tobytes()


def test_the_change_lands_where_the_alignment_puts_it(
    grace: Image.Image, detector: DlibDetector
) -> None:
    """A change that is a ramp along the crop's x axis arrives as that ramp in the photo."""
    size = 64
    aligned = align_face(grace, detect_faces(grace, detector)[0], size)
    ramp = torch.linspace(0.5 / size, 1 - 0.5 / size, size) * 0.2  # pixel centres, 0..0.2
    change = ramp.expand(1, 3, size, size).clone()
    out = _pixels(paste_change(grace, change, aligned, feather=0.1)) - _pixels(grace)
    mask = np.asarray(paste_mask(aligned, feather=0.1))
    full = mask == 255
    ys, xs = np.nonzero(full)
    forward = aligned.forward
    crop_x = forward[0, 0] * xs + forward[0, 1] * ys + forward[0, 2]
    expected = (crop_x + 0.5) / size * 0.2 * 255
    unclipped = _pixels(grace)[full][:, 0] + expected < 254.5  # bright pixels saturate
    assert unclipped.mean() > 0.5
    assert np.abs(out[full][:, 0] - expected)[unclipped].max() <= 1.0  # rounding only
    assert np.array_equal(out[mask == 0], np.zeros_like(out[mask == 0]))


def test_a_change_map_of_another_size_samples_the_same(
    astronaut: Image.Image, detector: DlibDetector
) -> None:
    aligned = align_face(astronaut, detect_faces(astronaut, detector)[0], 64)
    constant = torch.full((1, 3, 64, 64), 0.1)
    small = paste_change(astronaut, constant, aligned)
    large = paste_change(astronaut, torch.full((1, 3, 256, 256), 0.1), aligned)
    assert np.abs(_pixels(small) - _pixels(large)).max() <= 1


def test_detail_crop_has_the_face_s_own_resolution(
    astronaut: Image.Image, detector: DlibDetector
) -> None:
    face = detect_faces(astronaut, detector)[0]
    aligned = align_face(astronaut, face, 64)
    crop = detail_crop(astronaut, aligned)
    assert crop.width == crop.height == round(face.size)
    assert crop.width > 64


def test_paste_mode_errors_are_one_line(tiny_studio: Studio) -> None:
    assert check_paste_mode("change") == "change" and PASTE_MODES == ("change", "render")
    with pytest.raises(ValueError, match="paste must be one of change, render, got 'blend'"):
        check_paste_mode("blend")
    session = tiny_studio.encode_aligned(Image.new("RGB", (32, 32), (200, 150, 120)), T_inv=2)
    with pytest.raises(StudioError, match="paste must be one of"):
        tiny_studio.render(session, T_render=2, paste="blend")
    with pytest.raises(RecipeError, match="recipe paste must be one of"):
        Recipe(model_id="m", model_revision="r", T_inv=1, T_render=1, paste="blend")
    old = Recipe(model_id="m", model_revision="r", T_inv=1, T_render=1).to_dict()
    del old["paste"]  # a recipe written before paste modes existed
    assert Recipe.from_dict(old).paste == "change"


# ------------------------------------------------------------------------------------------
# The studio: unedited paste-back is the photo, edits still land


@pytest.mark.slow
@pytest.mark.parametrize("photo_name", ["astronaut", "grace"])
def test_unedited_change_paste_back_equals_the_original(
    studio: Studio, photo_name: str, request: pytest.FixtureRequest
) -> None:
    photo = request.getfixturevalue(photo_name)
    session = studio.encode_photo(photo, T_inv=T_INV)
    original = _pixels(photo)
    for result in (
        studio.render(session, T_render=T_RENDER),
        studio.render(session, dict.fromkeys(studio.attribute_names, 0.0), T_render=T_RENDER),
    ):
        assert result.paste == "change" and result.photo.size == photo.size
        mask = np.asarray(result.mask)
        outside_feather = (mask == 0) | (mask == 255)
        assert (mask == 255).sum() > 1000  # the face itself is in the checked pixels
        diff = np.abs(_pixels(result.photo) - original)
        assert diff[outside_feather].max() <= 1  # within 1/255
        assert diff.max() <= 1  # and inside the feather too
        # The crop shown and downloaded is the photo's own face, at its resolution.
        assert result.face_crop.width > studio.image_size
    # "render" mode replaces the face with the model's reconstruction: far from the photo.
    rendered = studio.reconstruct(session, T_render=T_RENDER)
    assert rendered.paste == "render" and rendered.face_crop is rendered.crop
    inside = np.asarray(rendered.mask) == 255
    assert np.abs(_pixels(rendered.photo) - original)[inside].mean() > 2


@pytest.mark.slow
def test_change_mode_needs_one_reference_render_per_session_and_steps(
    tiny_studio: Studio, astronaut: Image.Image, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = tiny_studio.encode_photo(astronaut, T_inv=T_INV)
    calls = []
    render = tiny_studio.model.render
    monkeypatch.setattr(
        tiny_studio.model, "render", lambda *a, **k: calls.append(1) or render(*a, **k)
    )
    tiny_studio.reconstruct(session, T_render=T_RENDER)  # the app does this on upload
    assert len(calls) == 1
    first = tiny_studio.render(session, {"Smiling": 0.5}, T_render=T_RENDER)
    second = tiny_studio.render(session, {"Smiling": 0.5}, T_render=T_RENDER)
    assert len(calls) == 3  # one render per edit: the reconstruction is reused
    assert first.photo.tobytes() == second.photo.tobytes()
    tiny_studio.render(session, {"Smiling": 0.5}, T_render=T_RENDER - 1)
    assert len(calls) == 5  # other step counts need their own reconstruction, once
    result = tiny_studio.render(session, {"Smiling": 0.5}, T_render=T_RENDER, seed=3)
    assert len(calls) == 6 and result.recipe.seed == 3


@pytest.mark.slow
def test_an_aligned_picture_keeps_its_size_in_both_modes(tiny_studio: Studio) -> None:
    picture = Image.fromarray(generate(HELDOUT_SEED_START + 7, 128)[0])  # 4× the tiny model
    session = tiny_studio.encode_aligned(picture, T_inv=T_INV)
    assert session.photo.size == (128, 128) and session.crop.size == (32, 32)
    unedited = tiny_studio.render(session, T_render=T_RENDER)
    assert unedited.photo.tobytes() == picture.tobytes() and unedited.mask is None
    edited = tiny_studio.render(session, {"Smiling": 1.0}, T_render=T_RENDER)
    assert edited.photo.size == (128, 128) and edited.face_crop is edited.photo
    whole = tiny_studio.render(session, {"Smiling": 1.0}, T_render=T_RENDER, paste="render")
    assert whole.photo.size == (128, 128) and whole.face_crop is whole.crop
    # The change is the same in both modes: the change-mode photo minus the picture equals
    # the render minus the reconstruction, upsampled (up to rounding and bicubic overshoot).
    recon = tiny_studio.reconstruct(session, T_render=T_RENDER).crop
    change = torch.from_numpy(_pixels(edited.crop) - _pixels(recon)).permute(2, 0, 1)[None]
    expected = torch.nn.functional.interpolate(
        change.float(), size=(128, 128), mode="bicubic", align_corners=False
    )[0].permute(1, 2, 0)
    delta = _pixels(edited.photo) - _pixels(picture)
    unclipped = (_pixels(edited.photo) > 0) & (_pixels(edited.photo) < 255)
    assert np.abs(delta).max() > 5
    assert np.median(np.abs(delta - expected.numpy())[unclipped]) <= 1.0


@pytest.mark.slow
def test_an_edit_pasted_back_as_a_change_still_moves_the_attribute(
    bundled_model_dir, detector: DlibDetector
) -> None:
    """Drawn faces at 4× the model's size, glasses added: the judge sees them in the result."""
    studio = Studio.load(bundled_model_dir, device="cpu", detector=detector)
    judge, _ = load_judge(DEFAULT_JUDGE_DIR, min_accuracy=0.95)
    column = ATTRIBUTES.index("Eyeglasses")
    strength = studio.classifier.metrics["_full_strength"]["Eyeglasses"]
    size = studio.image_size

    def has_glasses(image: Image.Image) -> float:
        small = np.array(image.resize((size, size), Image.Resampling.LANCZOS))[None]
        return float(judge.probabilities(images_to_tensor(small))[0, column])

    seen, tried, seed = 0, 0, HELDOUT_SEED_START + 300
    while tried < 4:
        picture, labels = generate(seed, 4 * size)
        seed += 1
        if labels[column]:
            continue
        tried += 1
        photo = Image.fromarray(picture)
        session = studio.encode_aligned(photo, T_inv=20)
        result = studio.render(session, {"Eyeglasses": strength}, T_render=20)
        assert result.paste == "change" and result.photo.size == photo.size
        assert has_glasses(photo) < 0.5
        seen += has_glasses(result.photo) > 0.5
    assert seen >= 3, f"glasses seen in {seen} of 4 change-mode edits"
