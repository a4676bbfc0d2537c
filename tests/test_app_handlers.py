"""The studio's handlers without a server: layout rules, every bad input of issue 7, the
slider/lock/target wiring, and the model selector's errors. Runs on the tiny random-weight
bundle (``DIFFAE_TEST_MODEL=bundled`` runs it on the bundled model)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from diffae_app.classifier import CELEBA_ATTRIBUTES
from diffae_app.data.synthfaces import ATTRIBUTES as SYNTHFACES_ATTRIBUTES
from diffae_app.progress import preview_calls
from diffae_app.session import QUALITY_PRESETS
from diffae_app.studio import Studio
from diffae_app.ui.handlers import MODES, Handlers, psnr
from diffae_app.ui.layout import (
    SliderBank,
    attribute_group,
    attribute_label,
    probability_chart_html,
    values_by_name,
)
from diffae_app.ui.models import ModelRegistry, describe, load_startup_model
from diffae_app.ui.runtime import Settings, gpu
from diffae_app.ui.state import UserState

from .test_app_fixtures import EXAMPLES, REPO, app_model, bad_inputs, real_photo

pytestmark = pytest.mark.usefixtures("single_thread")

QUALITY = "preview"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    # The handlers' wiring does not depend on the weights: the tiny bundle keeps this fast.
    return app_model(tmp_path_factory.mktemp("model"), prefer="tiny")


@pytest.fixture(scope="module")
def registry(model_dir: str) -> ModelRegistry:
    return ModelRegistry(lambda spec: Studio.load(spec, device="cpu"), model_dir, allow_custom=True)


@pytest.fixture(scope="module")
def handlers(registry: ModelRegistry) -> Handlers:
    studio = registry.default
    bank = SliderBank([*studio.attribute_names, *SYNTHFACES_ATTRIBUTES, *CELEBA_ATTRIBUTES])
    return Handlers(registry, bank)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return bad_inputs(tmp_path_factory.mktemp("inputs"))


def encode(handlers: Handlers, photo, state=None, aligned=False) -> dict:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = handlers.on_photo(
            str(photo), aligned, QUALITY, MODES[0], state or handlers.new_state()
        )
    out["_warnings"] = [str(w.message) for w in caught]
    return out


def render(
    handlers: Handlers,
    state: UserState,
    values: dict[str, float],
    locks=(),
    quality=QUALITY,
    paste: str = "change",
) -> list[dict]:
    slots = [values.get(name, 0.0) if name else 0.0 for name in state.slots]
    return list(handlers.on_render(state, MODES[0], quality, -1, list(locks), slots, paste=paste))


# --------------------------------------------------------------------------- layout


def test_attribute_groups_cover_both_vocabularies():
    assert attribute_group("Smiling") == "expression"
    assert attribute_group("Mouth_Slightly_Open") == "expression"
    assert attribute_group("Blond_Hair") == "hair"
    assert attribute_group("Beard") == "hair"
    assert attribute_group("5_o_Clock_Shadow") == "hair"
    assert attribute_group("Wearing_Hat") == "accessories"
    assert attribute_group("Eyeglasses") == "accessories"
    assert attribute_group("Wearing_Lipstick") == "accessories"
    assert attribute_group("Pale_Skin") == "face"
    assert attribute_group("Big_Lips") == "face"
    assert attribute_group("Rosy_Cheeks") == "face"
    assert attribute_group("Blurry") == "other"
    assert attribute_group("Freckles") == "other"
    assert attribute_label("Mouth_Slightly_Open") == "Mouth slightly open"


def test_slider_bank_maps_known_unknown_and_custom_names():
    bank = SliderBank([*SYNTHFACES_ATTRIBUTES, *CELEBA_ATTRIBUTES], free_per_group=2)
    assert len({s.elem_id for s in bank.slots}) == len(bank.slots)  # ids are unique
    mapping = bank.assign(["Smiling", "Glow", "Sparkle", "Extra"], custom_names=["Freckles"])
    placed = {n for n in mapping if n}
    assert placed == {"Smiling", "Glow", "Sparkle", "Freckles"}  # only 2 free 'other' slots
    assert bank.unplaced(mapping, ["Smiling", "Extra"]) == ["Extra"]
    assert bank.slots[mapping.index("Freckles")].group == "custom"
    values = [1.0 if n == "Smiling" else 0.0 for n in mapping]
    assert values_by_name(mapping, values)["Smiling"] == 1.0
    assert bank.visible_groups(mapping) == {"expression", "other", "custom"}


def test_forty_celeba_sliders_find_their_groups():
    bank = SliderBank([*SYNTHFACES_ATTRIBUTES, *CELEBA_ATTRIBUTES])
    mapping = bank.assign(CELEBA_ATTRIBUTES)
    assert not bank.unplaced(mapping, CELEBA_ATTRIBUTES)
    groups: dict[str, int] = {}
    for slot, name in zip(bank.slots, mapping, strict=True):
        if name is not None:
            groups[slot.group] = groups.get(slot.group, 0) + 1
    assert sum(groups.values()) == 40
    assert groups["expression"] == 2 and groups["accessories"] >= 6 and groups["hair"] >= 10
    assert groups.get("other", 0) <= 2  # only names like Blurry fall through


def test_app_module_builds_demo_without_launching(monkeypatch, model_dir: str):
    import importlib.util

    monkeypatch.setenv("DIFFAE_MODEL", model_dir)
    spec = importlib.util.spec_from_file_location("studio_app_under_test", REPO / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert isinstance(module.demo, gr.Blocks)
    assert not module.demo.is_running  # launching happens only under __main__
    names = {d.api_name for d in module.demo.fns.values() if d.api_visibility == "public"}
    assert {"encode", "edit", "interpolate", "sample", "attributes"} <= names
    assert module.models.default.model_id  # the model is loaded once, at import


def test_probability_chart_lists_moved_attributes_first():
    chart = probability_chart_html(
        {"A_b": 0.2, "Smiling": 0.5}, {"Smiling": 0.9}, highlight=["Smiling"]
    )
    assert chart.index("Smiling") < chart.index("A b")
    assert "50% → 90%" in chart and "20% → 20%" in chart
    assert "prob-empty" in probability_chart_html({})
    # What the code asked for is shown only where the measured result differs from it.
    honest = probability_chart_html(
        {"Smiling": 0.5, "Bangs": 0.2},
        {"Smiling": 0.55, "Bangs": 0.3},
        asked={"Smiling": 0.9, "Bangs": 0.32},
    )
    assert "asked 90%" in honest and "asked 32%" not in honest


def test_settings_from_env_and_gpu_decorator(monkeypatch):
    settings = Settings.from_env({"DIFFAE_CONCURRENCY": "3", "DIFFAE_QUEUE_SIZE": "9"})
    assert settings.queue_kwargs() == {"default_concurrency_limit": 3, "max_size": 9}
    assert settings.model == "default" and settings.allow_model_loading
    on_space = Settings.from_env({"SPACE_ID": "me/studio", "SPACES_ZERO_GPU": "true"})
    assert not on_space.allow_model_loading and on_space.concurrency == 1
    with pytest.raises(ValueError, match="DIFFAE_QUEUE_SIZE"):
        Settings.from_env({"DIFFAE_QUEUE_SIZE": "zero"})
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7999")
    launch = Settings.from_env({}).launch_kwargs()
    assert launch["server_port"] == 7999 and launch["run_history"] is False
    assert launch["share"] is False

    def f(x):
        return x

    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    assert gpu()(f) is f  # no effect off ZeroGPU


# --------------------------------------------------------------------------- encoding + editing


def test_real_photo_encode_edit_and_downloads(handlers: Handlers, tmp_path: Path):
    photo = real_photo(tmp_path)
    out = encode(handlers, photo)
    state = out["state"]
    assert state.session is not None and state.session.kind == "photo"
    assert out["crop"]["value"].size == (state.session.image_size,) * 2
    assert "PSNR" in out["quality_md"] and state.psnr is not None
    assert Path(out["dl_encoding"]["value"]).is_file()
    outs = render(handlers, state, {"Bangs": 0.8, "Smiling": 0.5}, quality="balanced")
    # The face forming (the sampler's estimate every few steps, with ETA), then the final.
    T_render = QUALITY_PRESETS["balanced"].T_render
    assert len(outs) == len(preview_calls(T_render)) + 1
    assert outs[0]["edited_crop"].size == out["crop"]["value"].size and "dl_png" not in outs[0]
    assert outs[0]["status"].startswith(f"Rendering: step 2 of {T_render}")
    # Default paste-back "change": the edited face is the photo's own, at its resolution.
    face_side = outs[-1]["edited_crop"].size
    assert face_side[0] == face_side[1] > out["crop"]["value"].size[0]
    final = outs[-1]
    assert final["edited_crop"].size == face_side
    png = Image.open(final["dl_png"]["value"])
    assert png.size == Image.open(photo).size
    changed = np.asarray(png.convert("RGB"))  # read now: the next render rewrites the file
    recipe = json.loads(Path(final["dl_recipe"]["value"]).read_text())
    assert recipe["strengths"] == {"Bangs": 0.8, "Smiling": 0.5} and recipe["paste"] == "change"
    assert Image.open(final["dl_crop"]["value"]).size == face_side
    assert final["compare"][1] == final["dl_png"]["value"]

    # "Whole render": the model's face, at its size, in the view, the photo and the crop file.
    rendered = render(handlers, state, {"Bangs": 0.8, "Smiling": 0.5}, paste="render")[-1]
    assert rendered["edited_crop"].size == out["crop"]["value"].size
    assert Image.open(rendered["dl_crop"]["value"]).size == out["crop"]["value"].size
    assert json.loads(Path(rendered["dl_recipe"]["value"]).read_text())["paste"] == "render"
    with Image.open(rendered["dl_png"]["value"]) as whole:
        assert whole.size == png.size
        assert not np.array_equal(np.asarray(whole.convert("RGB")), changed)


def test_upload_shows_the_reconstruction_and_reset_returns_to_it(handlers: Handlers):
    """(b): the edit view is filled from the upload on; Reset brings the reconstruction back."""
    out = encode(handlers, EXAMPLES / "face_a.png")
    state = out["state"]
    crop_file = out["edited_crop"]
    assert Image.open(crop_file).tobytes() == out["recon"].tobytes()
    photo, after = out["compare"]
    assert Image.open(photo).size == Image.open(after).size == state.session.photo.size
    assert out["dl_png"]["interactive"] and Path(out["dl_recipe"]["value"]).is_file()
    assert "reconstruction" in out["chart"]  # measured on the reconstruction
    edited = render(handlers, state, {"Bangs": 0.8})[-1]
    assert edited["edited_crop"].tobytes() != out["recon"].tobytes()
    reset = handlers.on_reset(MODES[0], state)
    assert reset["edited_crop"] == crop_file and reset["compare"] == out["compare"]
    assert reset["dl_png"]["value"] == out["dl_png"]["value"]


def test_render_reports_asked_and_got(handlers: Handlers):
    """The chart's "after" is measured on the result; "asked" appears where they differ."""
    state = encode(handlers, EXAMPLES / "face_a.png")["state"]
    final = render(handlers, state, {"Eyeglasses": 2.0})[-1]
    studio = handlers.models.default
    result = studio.render(state.session, {"Eyeglasses": 2.0}, T_render=10)
    got = result.probabilities_after["Eyeglasses"]
    asked = result.probabilities_asked["Eyeglasses"]
    assert f"→ {100 * got:.0f}%" in final["chart"]
    if abs(asked - got) > 0.1:
        assert f"asked {100 * asked:.0f}%" in final["chart"]


def test_locks_and_target_mode(handlers: Handlers):
    state = encode(handlers, EXAMPLES / "face_a.png")["state"]
    # A locked slider is ignored (the pipeline would refuse a locked, moved attribute).
    strengths, targets, locks, before = handlers.edit_request(
        state,
        MODES[0],
        ["Smiling"],
        [0.7 if n in ("Smiling", "Bangs") else 0.0 for n in state.slots],
    )
    assert strengths == {"Bangs": 0.7} and locks == ("Smiling",) and not targets
    # Target mode: sliders start at the face's probability; only moved ones become targets.
    sliders = handlers.on_mode(MODES[1], state)
    start = {n: sliders[f"slot{i}"]["value"] for i, n in enumerate(state.slots) if n is not None}
    assert all(0.0 <= v <= 1.0 for v in start.values())
    values = [(0.95 if n == "Eyeglasses" else start[n]) if n else 0.0 for n in state.slots]
    strengths, targets, locks, _ = handlers.edit_request(state, MODES[1], [], values)
    assert targets == {"Eyeglasses": 0.95} and not strengths
    final = list(handlers.on_render(state, MODES[1], QUALITY, -1, [], values))[-1]
    assert "Eyeglasses" in final["status"]
    reset = handlers.on_reset(MODES[0], state)
    assert all(reset[f"slot{i}"]["value"] == 0.0 for i, n in enumerate(state.slots) if n)


def test_render_without_face_is_a_clear_error(handlers: Handlers):
    with pytest.raises(gr.Error, match="upload a photo"):
        list(handlers.on_render(handlers.new_state(), MODES[0], QUALITY, -1, [], []))


# --------------------------------------------------------------------------- bad inputs

UNREADABLE = {
    "not_an_image.png": "not an image|cannot be read|cannot identify|unreadable|not a",
    "empty.jpg": "empty",
    "truncated.jpg": "truncated|corrupt|incomplete|damaged",
    "corrupt.png": "corrupt|truncated|not an image|damaged|cannot",
    "bomb.png": "too large|megapixel|Mpx|pixels",
    "huge.jpg": "too large|megapixel|Mpx|pixels",
    "tiny_face.png": "face",
    "no_face.png": "no face",
}
USABLE = [
    "grayscale.png",
    "cmyk.jpg",
    "sixteen_bit.png",
    "rgba.png",
    "palette.png",
    "animated.gif",
    "exif_rotated.jpg",
    "face_at_border.png",
]


@pytest.mark.parametrize("name", sorted(UNREADABLE))
def test_bad_upload_gives_one_clear_line_and_session_stays_usable(
    handlers: Handlers, files: dict[str, Path], name: str
):
    good = encode(handlers, EXAMPLES / "face_b.png")["state"]
    out = encode(handlers, files[name], state=good)
    message = out["status"]
    assert message.startswith("⚠️"), message
    assert "Traceback" not in message and "\n" not in message.strip()
    import re

    assert re.search(UNREADABLE[name], message, re.IGNORECASE), message
    assert out["_warnings"] and out["_warnings"][0] in message  # shown as a toast too
    assert out["state"].session is None and out["state"].uid == good.uid
    # The same session goes on working with the next photo.
    again = encode(handlers, EXAMPLES / "face_b.png", state=out["state"])
    assert again["state"].session is not None


@pytest.mark.parametrize("name", USABLE)
def test_unusual_but_valid_images_are_edited(handlers: Handlers, files: dict[str, Path], name: str):
    out = encode(handlers, files[name])
    assert out["state"].session is not None, out.get("status")
    session = out["state"].session
    assert session.photo.mode == "RGB"
    if name == "exif_rotated.jpg":  # upright: the stored image was sideways
        assert session.photo.size == (256, 256)
    if name == "face_at_border.png":  # the crop needed FFHQ's border padding
        assert session.aligned.edge_band > 0
    final = render(handlers, out["state"], {"Smiling": 0.5})[-1]
    assert Image.open(final["dl_png"]["value"]).size == session.photo.size


def test_quality_change_encodes_the_face_the_picker_shows(
    handlers: Handlers, files: dict[str, Path]
):
    """Bug 3: a quality change started before a pick reached the state still encodes the
    picked face (the picker's value), so results belong to the latest choice."""
    state = encode(handlers, files["two_faces.png"])["state"]
    assert state.session.face_index == 0
    out = handlers.on_face_or_quality("balanced", MODES[0], state, face_choice="Face 2")
    assert out["state"].session.face_index == 1
    assert out["face_pick"]["value"] == "Face 2"  # picker and picture agree
    assert out["state"].session.T_inv == QUALITY_PRESETS["balanced"].T_inv


def test_several_faces_are_offered_and_pickable(handlers: Handlers, files: dict[str, Path]):
    out = encode(handlers, files["two_faces.png"])
    state = out["state"]
    assert len(state.faces) == 2 and state.session.face_index == 0
    assert out["faces_view"]["visible"] and out["face_pick"]["choices"] == ["Face 1", "Face 2"]
    # The picker's event: the app wires it to this handler (with the quality radio).
    picked = handlers.on_face_or_quality(QUALITY, MODES[0], state, face_choice="Face 2")
    assert picked["state"].session.face_index == 1
    assert picked["face_pick"]["value"] == "Face 2"
    assert picked["state"].session.crop.tobytes() != state.session.crop.tobytes()


def test_aligned_crop_input_skips_detection(handlers: Handlers, files: dict[str, Path]):
    out = encode(handlers, files["no_face.png"], aligned=True)
    assert out["state"].session is not None and out["state"].session.kind == "aligned"


def _load_model(handlers: Handlers, spec: str, state: UserState) -> tuple[dict, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = handlers.on_load_model(spec, MODES[0], state)
    return out, [str(w.message) for w in caught]


def test_model_selector_errors_are_clear(handlers: Handlers, tmp_path: Path):
    state = handlers.new_state()
    out, toasts = _load_model(handlers, str(tmp_path / "no-such-model"), state)
    assert len(toasts) == 1 and "no-such-model" in toasts[0] and "no-such-model" in out["status"]
    wrong = tmp_path / "wrong-model"
    wrong.mkdir()
    (wrong / "config.json").write_text("{not json")
    broken, broken_toasts = _load_model(handlers, str(wrong), state)
    assert len(broken_toasts) == 1 and "wrong-model" in broken_toasts[0]
    # One message for every cause: it must not tell a missing path from a broken model.
    assert broken_toasts[0].replace("wrong-model", "X") == toasts[0].replace("no-such-model", "X")
    loaded = handlers.on_load_model("", MODES[0], state)  # back to the default
    assert loaded["state"].model == "" and "Model" in loaded["header"]


def test_failed_model_load_keeps_the_session_and_its_edit(handlers: Handlers, tmp_path: Path):
    """Bug 4: a missing folder is a warning; nothing of the session is touched or failed."""
    state = encode(handlers, EXAMPLES / "face_a.png")["state"]
    out, toasts = _load_model(handlers, str(tmp_path / "missing-folder"), state)
    assert len(toasts) == 1 and "missing-folder" in toasts[0]
    # Only the status and the selector change: no state, images or sliders are replaced.
    assert set(out) == {"status", "model_choice"}
    assert out["model_choice"]["value"] == handlers.models.default_spec
    final = render(handlers, state, {"Bangs": 0.5})[-1]  # and the face still edits
    assert Path(final["dl_png"]["value"]).is_file()


def test_startup_with_a_missing_model_falls_back_with_a_notice(model_dir: str, tmp_path: Path):
    def loader(spec: str):
        return Studio.load(model_dir if spec == "default" else spec, device="cpu")

    spec, studio, notice = load_startup_model(loader, str(tmp_path / "missing"))
    assert spec == "default" and "missing" in notice
    assert "⚠️" in describe(studio, spec, notice)
    with pytest.raises(SystemExit, match="bundled model"):
        load_startup_model(lambda s: Studio.load(str(tmp_path / "nothing")), "default")


# --------------------------------------------------------------------------- other tabs


def test_random_faces_send_to_edit(handlers: Handlers):
    state = handlers.new_state()
    out = handlers.on_sample(3, 2, QUALITY, state)
    assert len(out["gallery"]) == 2 and len(out["state"].samples) == 2
    state = handlers.on_sample_select(1, out["state"])["state"]
    sent = handlers.on_send_to_edit(QUALITY, MODES[0], state)
    assert sent["state"].session is state.samples[1]
    assert sent["tabs"]["selected"] == "edit" and sent["photo"] is None
    # Bug 7: the before/after is filled at once, and no "PSNR is inf dB".
    before, after = sent["compare"]
    assert Path(before).is_file() and Path(after).is_file()
    assert "inf" not in sent["quality_md"] and "PSNR" not in sent["quality_md"]
    final = render(handlers, sent["state"], {"Smiling": 0.4})[-1]
    assert final["edited_crop"].size == sent["crop"]["value"].size


def test_interpolate_writes_strip_and_gif(handlers: Handlers):
    out = handlers.on_interpolate(
        str(EXAMPLES / "face_a.png"), str(EXAMPLES / "face_b.png"), 3, QUALITY, handlers.new_state()
    )
    strip, gif = Image.open(out["interp_strip"]), Image.open(out["interp_gif"])
    assert strip.width == 3 * strip.height
    assert gif.is_animated and gif.n_frames >= 3


def test_custom_attribute_adds_a_slider(handlers: Handlers, files: dict[str, Path]):
    state = encode(handlers, EXAMPLES / "face_a.png")["state"]
    positives = [str(EXAMPLES / "face_a.png"), str(EXAMPLES / "face_c.png")]
    negatives = [str(EXAMPLES / "face_b.png"), str(EXAMPLES / "face_d.png")]
    out = handlers.on_custom(positives, negatives, "Happy vibe", False, MODES[0], state)
    new = out["state"]
    assert "Happy vibe" in new.slots and "Happy vibe" in new.custom_names
    index = new.slots.index("Happy vibe")
    assert out[f"slot{index}"]["visible"] and handlers.bank.slots[index].group == "custom"
    assert Path(out["custom_file"]).suffix == ".safetensors"
    final = render(handlers, new, {"Happy vibe": 0.6})[-1]
    recipe = json.loads(Path(final["dl_recipe"]["value"]).read_text())
    assert "Happy vibe" in recipe["custom_attributes"]
    with pytest.raises(gr.Error, match="at least 2"):
        handlers.on_custom(positives[:1], negatives, "Lonely", False, MODES[0], new)


def test_custom_attribute_skips_an_unusable_photo_by_name(
    handlers: Handlers, files: dict[str, Path]
):
    """Bug 6: a photo without a face is skipped with a warning naming it, when enough remain."""
    state = handlers.new_state()
    positives = [str(EXAMPLES / n) for n in ("face_a.png", "face_c.png")]
    positives.append(str(files["no_face.png"]))
    negatives = [str(EXAMPLES / "face_b.png"), str(EXAMPLES / "face_d.png")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = handlers.on_custom(positives, negatives, "Cheerful", False, MODES[0], state)
    toasts = [str(w.message) for w in caught]
    assert "Cheerful" in out["state"].custom_names
    assert len(toasts) == 1 and "no_face.png" in toasts[0] and "no face" in toasts[0]
    assert "2 with" in out["custom_status"] and "skipped 1" in out["custom_status"]
    # Too few usable examples left: a clear error that names the skipped file.
    with pytest.raises(gr.Error, match="no_face.png") as error:
        handlers.on_custom(positives[1:], negatives, "Lonely", False, MODES[0], state)
    assert "at least 2" in error.value.message


def test_psnr():
    a = Image.new("RGB", (8, 8), (10, 20, 30))
    assert psnr(a, a) == float("inf")
    assert 20 < psnr(a, Image.new("RGB", (8, 8), (12, 20, 30))) < 50


def test_app_returns_freed_memory_and_picks_precision_by_measurement():
    import platform

    from diffae_app.ui.runtime import return_freed_memory_to_os

    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert return_freed_memory_to_os()
    assert Settings.from_env({}).precision == "auto"
