"""Safe to share (issue 15): one user's data never reaches another, typed model specs are
locked down where the server is reachable by others, Hub downloads are pinned.

In-process, on the tiny bundle: the handlers and the delete callback the app really registers.
The two-browser check is in test_app_browser.py.
"""

from __future__ import annotations

import gc
import stat
import tempfile
import warnings
import weakref
from pathlib import Path
from typing import Any

import pytest

from diffae_app.classifier import CELEBA_ATTRIBUTES
from diffae_app.data.synthfaces import ATTRIBUTES as SYNTHFACES_ATTRIBUTES
from diffae_app.studio import Studio
from diffae_app.ui.handlers import MODES, Handlers
from diffae_app.ui.layout import SliderBank
from diffae_app.ui.models import ModelRegistry
from diffae_app.ui.runtime import Settings

from .test_app_fixtures import EXAMPLES, REPO, app_model

pytestmark = pytest.mark.usefixtures("single_thread")

QUALITY = "preview"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return app_model(tmp_path_factory.mktemp("model"), prefer="tiny")


def _handlers(registry: ModelRegistry) -> Handlers:
    names = registry.default.attribute_names
    return Handlers(registry, SliderBank([*names, *SYNTHFACES_ATTRIBUTES, *CELEBA_ATTRIBUTES]))


@pytest.fixture(scope="module")
def registry(model_dir: str) -> ModelRegistry:
    return ModelRegistry(lambda spec: Studio.load(spec, device="cpu"), model_dir)


@pytest.fixture(scope="module")
def handlers(registry: ModelRegistry) -> Handlers:
    return _handlers(registry)


class _Progress:
    """A stand-in for gr.Progress that records the messages."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def __call__(self, fraction: float, desc: str = "") -> None:
        self.messages.append(desc)


def _upload(handlers: Handlers, photo: Path, state: Any, progress: Any = None) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return handlers.on_photo(str(photo), False, QUALITY, MODES[0], state, progress)


# --------------------------------------------------------------------------- per-user data


def test_same_photo_from_another_user_is_encoded_afresh(handlers: Handlers, monkeypatch) -> None:
    studio = handlers.models.default
    # Count DDIM inversions: the encoding work of a photo (the encoder also runs on every
    # render, to measure what the result shows, so its count says nothing about caching).
    calls = {"encode": 0}
    original = studio.model.encode_stochastic

    def counting(*args, **kwargs):
        calls["encode"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(studio.model, "encode_stochastic", counting)
    photo = EXAMPLES / "face_a.png"
    a = _upload(handlers, photo, handlers.new_state())["state"]
    assert calls["encode"] == 1
    # The same user re-uploading is served from their own cache...
    again = _upload(handlers, photo, a, _Progress())["state"]
    assert again.session is a.session and calls["encode"] == 1
    # ...another user uploading the very same photo is not: full encoding work, no "cached".
    progress = _Progress()
    b = _upload(handlers, photo, handlers.new_state(), progress)["state"]
    assert calls["encode"] == 2
    assert b.session is not a.session and b.cache is not a.cache
    assert "encoding (cached)" not in progress.messages
    assert any("inverting" in m for m in progress.messages)
    # The shared studio holds no encoding of anyone.
    assert not any(hasattr(v, "put") for v in vars(studio).values())


def test_expired_state_leaves_nothing_of_the_photo(model_dir: str) -> None:
    from diffae_app.ui.app import build_demo

    registry = ModelRegistry(lambda spec: Studio.load(spec, device="cpu"), model_dir)
    demo = build_demo(registry, Settings.from_env({}))
    (state_block,) = [b for b in demo.blocks.values() if type(b).__name__ == "State"]
    handlers = _handlers(registry)
    out = _upload(handlers, EXAMPLES / "face_a.png", handlers.new_state())
    state = out["state"]
    photo, crop = weakref.ref(state.session.photo), weakref.ref(state.session.crop)
    cache = state.cache
    assert len(cache) > 0 and photo() is not None
    folder = state.output_dir("probe")
    state_block.delete_callback(state)  # what Gradio calls when the state expires
    assert len(cache) == 0 and not folder.exists()
    del out, state
    gc.collect()
    assert photo() is None and crop() is None  # nothing in the process references them


def test_output_and_example_folders_are_private_per_process(handlers: Handlers) -> None:
    from diffae_app.ui.examples import real_photo_examples

    state = handlers.new_state()
    folder = state.output_dir("probe")
    user_dir, root = folder.parent, folder.parent.parent
    for path in (folder, user_dir, root):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    assert root.parent == Path(tempfile.gettempdir())
    assert root.name not in ("diffae-studio", "outputs") and root.name.startswith("diffae-")
    examples = real_photo_examples()
    if examples:
        assert stat.S_IMODE(examples[0].parent.stat().st_mode) == 0o700
        assert examples[0].parent.name != "diffae-studio-examples"


# --------------------------------------------------------------------------- model loading


@pytest.mark.parametrize(
    ("env", "allowed"),
    [
        ({}, True),  # Gradio's default 127.0.0.1
        ({"GRADIO_SERVER_NAME": "127.0.0.1"}, True),
        ({"GRADIO_SERVER_NAME": "localhost"}, True),
        ({"GRADIO_SERVER_NAME": "0.0.0.0"}, False),
        ({"GRADIO_SERVER_NAME": "::"}, False),
        ({"GRADIO_SERVER_NAME": "192.168.1.20"}, False),
        ({"GRADIO_SERVER_NAME": "studio.lab.example"}, False),
        ({"GRADIO_SHARE": "1"}, False),
        ({"SPACE_ID": "me/studio"}, False),
        ({"GRADIO_SERVER_NAME": "0.0.0.0", "DIFFAE_ALLOW_MODEL_LOADING": "1"}, True),
        ({"DIFFAE_ALLOW_MODEL_LOADING": "0"}, False),
    ],
)
def test_typed_models_are_off_whenever_others_can_reach_the_server(env, allowed) -> None:
    settings = Settings.from_env(env)
    assert settings.allow_model_loading is allowed
    assert settings.launch_kwargs()["share"] is settings.share


def test_is_loopback() -> None:
    from diffae_app.ui.runtime import is_loopback

    assert is_loopback(None) and is_loopback("127.0.0.5") and is_loopback("[::1]")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.1")


def test_allow_list_is_the_way_to_offer_models(model_dir: str) -> None:
    loads: list[str] = []

    def loader(spec: str) -> Any:
        loads.append(spec)
        return Studio.load(model_dir, device="cpu") if spec == model_dir else object()

    settings = Settings.from_env({"DIFFAE_MODELS": "owner/extra@0123abc, /srv/other"})
    assert settings.extra_models == ("owner/extra@0123abc", "/srv/other")
    registry = ModelRegistry(loader, model_dir, choices=settings.extra_models)
    assert not registry.allow_custom  # typed specs are opt-in
    with pytest.raises(PermissionError, match="pick one of"):
        registry.get("/etc", owner="a")
    assert loads == [model_dir]  # refused before any loading or file-system look-up
    shared = registry.get("/srv/other", owner="a")
    assert registry.get("/srv/other", owner="b") is shared  # allow-listed: shared


def test_a_typed_model_is_the_typing_sessions_alone(model_dir: str, tmp_path: Path) -> None:
    registry = ModelRegistry(
        lambda spec: Studio.load(spec, device="cpu"), model_dir, allow_custom=True, max_loaded=4
    )
    handlers = _handlers(registry)
    own = tmp_path / "my-model"
    own.symlink_to(model_dir)
    a = handlers.new_state()
    out_a = handlers.on_load_model(str(own), MODES[0], a)
    assert str(own) in out_a["model_choice"]["choices"]  # A sees what A typed
    b = handlers.new_state()
    out_b = handlers.on_load_model("", MODES[0], b)
    assert str(own) not in out_b["model_choice"]["choices"]  # B never does
    assert str(own) not in registry.choices
    studio_a = registry.get(str(own), owner=a.uid)
    studio_b = registry.get(str(own), owner=b.uid)
    assert studio_b is not studio_a  # B typing it too loads B's own copy
    registry.release(a.uid)
    assert registry.get(str(own), owner=b.uid) is studio_b
    assert str(own) in registry.loaded()


def test_errors_never_tell_whether_a_path_exists(model_dir: str, tmp_path: Path) -> None:
    from diffae_app.ui.models import ModelUnavailable

    registry = ModelRegistry(
        lambda spec: Studio.load(spec, device="cpu"), model_dir, allow_custom=True
    )
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("not a model")
    probes = [
        tmp_path / "missing",
        tmp_path / "empty",
        tmp_path / "notes.txt",
        tmp_path / "weights.ckpt",
        Path("/etc"),
        REPO / "tests",
    ]
    (tmp_path / "weights.ckpt").write_bytes(b"junk")
    messages = set()
    for probe in probes:
        with pytest.raises(ModelUnavailable) as caught:
            registry.get(str(probe), owner="x")
        messages.add(str(caught.value).replace(repr(str(probe)), "<spec>"))
    assert len(messages) == 1, messages
    (message,) = messages
    assert "\n" not in message and "exist" not in message


# --------------------------------------------------------------------------- revisions


def test_hub_revisions_are_pinned_from_the_settings() -> None:
    from diffae_app.ui.models import split_revision, studio_loader

    settings = Settings.from_env(
        {"DIFFAE_MODEL": "owner/ffhq256", "DIFFAE_MODEL_REVISION": "4c5d6e7f" * 5}
    )
    assert settings.model_revision == "4c5d6e7f" * 5
    calls: list[tuple] = []

    def load(spec, *, revision, device, precision):
        calls.append((spec, revision, device, precision))
        return object()

    loader = studio_loader(
        load,
        device="cpu",
        precision="bfloat16",
        model=settings.model,
        revision=settings.model_revision,
    )
    loader("owner/ffhq256")
    loader("owner/other@v1.0")
    loader("default")
    assert calls == [
        ("owner/ffhq256", "4c5d6e7f" * 5, "cpu", "bfloat16"),
        ("owner/other", "v1.0", "cpu", "bfloat16"),
        ("default", None, "cpu", "bfloat16"),
    ]
    assert split_revision("models/ffhq256") == ("models/ffhq256", None)
    assert split_revision("/srv/models/ffhq256") == ("/srv/models/ffhq256", None)
