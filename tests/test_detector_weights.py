"""face-alignment weight files are hash-checked; ``auto`` picks FAN only with good weights in
the local cache; the aligned-face caption says which detector ran (issue 15).

No network: the "download" is a ``file://`` URL, the weight files are fakes.
"""

from __future__ import annotations

import hashlib
import importlib.util
import warnings
from pathlib import Path

import pytest

from diffae_app import align
from diffae_app.align import DetectorUnavailable, FanDetector, fan_weights, make_detector

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("face_alignment") is None, reason="face-alignment not installed"
)


def _named_after_hash(folder: Path, stem: str, suffix: str, content: bytes) -> str:
    """A file named the torch-hub way, ``stem-<sha256 prefix>.suffix``, holding ``content``."""
    name = f"{stem}-{hashlib.sha256(content).hexdigest()[:10]}{suffix}"
    (folder / name).write_bytes(content)
    return name


@pytest.fixture
def weights_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    monkeypatch.setattr(fan_weights, "fan_weights_dir", lambda: folder)
    return folder


def test_fake_weight_file_is_refused_with_one_line(weights_dir: Path) -> None:
    for name in align.FAN_WEIGHT_FILES:  # the published names, wrong content
        (weights_dir / name).write_bytes(b"not the published weights")
    with pytest.raises(DetectorUnavailable) as caught:
        make_detector("face_alignment")
    message = str(caught.value)
    assert "\n" not in message
    assert "sha256" in message and align.FAN_WEIGHT_FILES[0] in message
    assert "619a316812" in message  # the expected prefix, from the file name


def test_auto_falls_back_to_dlib_on_a_bad_file(weights_dir: Path) -> None:
    for name in align.FAN_WEIGHT_FILES:
        (weights_dir / name).write_bytes(b"truncated")
    detector = make_detector("auto")
    assert detector.name == "dlib"
    assert "sha256" in detector.reason and "dlib" in detector.reason


def test_auto_uses_face_alignment_when_good_weights_are_cached(
    weights_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = (
        _named_after_hash(weights_dir, "s3fd", ".pth", b"detector weights"),
        _named_after_hash(weights_dir, "2DFAN4", ".pth.tar", b"landmark weights"),
    )
    monkeypatch.setattr(fan_weights, "FAN_WEIGHT_FILES", names)
    detector = make_detector("auto")
    assert isinstance(detector, FanDetector) and detector.name == "face_alignment"


def test_auto_uses_dlib_without_cached_weights(weights_dir: Path) -> None:
    detector = make_detector("auto")
    assert detector.name == "dlib" and "missing" in detector.reason


def test_download_with_the_wrong_hash_is_refused(
    weights_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = tmp_path / "server"
    server.mkdir()
    for name in align.FAN_WEIGHT_FILES:
        (server / name).write_bytes(b"a tampered mirror")
    monkeypatch.setattr(fan_weights, "FAN_WEIGHTS_URL", server.as_uri() + "/")
    with pytest.raises(DetectorUnavailable) as caught:
        FanDetector(allow_download=True)
    message = str(caught.value)
    assert "\n" not in message and "hash" in message
    assert not any(weights_dir.iterdir())  # nothing half-written or wrong is left behind


def test_download_with_the_right_hash_is_kept(
    weights_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = tmp_path / "server"
    server.mkdir()
    names = (
        _named_after_hash(server, "s3fd", ".pth", b"detector weights"),
        _named_after_hash(server, "2DFAN4", ".pth.tar", b"landmark weights"),
    )
    monkeypatch.setattr(fan_weights, "FAN_WEIGHT_FILES", names)
    monkeypatch.setattr(fan_weights, "FAN_WEIGHTS_URL", server.as_uri() + "/")
    detector = FanDetector(allow_download=True)
    assert sorted(p.name for p in weights_dir.iterdir()) == sorted(names)
    assert detector.weights_dir == weights_dir


def test_aligned_face_caption_names_the_detector(tmp_path: Path) -> None:
    from diffae_app.classifier import CELEBA_ATTRIBUTES
    from diffae_app.data.synthfaces import ATTRIBUTES
    from diffae_app.studio import Studio
    from diffae_app.ui.handlers import MODES, Handlers
    from diffae_app.ui.layout import SliderBank
    from diffae_app.ui.models import ModelRegistry

    from .test_app_fixtures import EXAMPLES, build_tiny_bundle

    bundle = build_tiny_bundle(tmp_path / "tiny32")
    registry = ModelRegistry(
        lambda spec: Studio.load(spec, device="cpu", detector="dlib"), str(bundle)
    )
    handlers = Handlers(registry, SliderBank([*ATTRIBUTES, *CELEBA_ATTRIBUTES]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        photo = handlers.on_photo(
            str(EXAMPLES / "face_a.png"), False, "preview", MODES[0], handlers.new_state()
        )
        aligned = handlers.on_photo(
            str(EXAMPLES / "face_a.png"), True, "preview", MODES[0], handlers.new_state()
        )
    assert "detector: dlib" in photo["crop"]["label"]
    assert "no detection" in aligned["crop"]["label"]
    info = handlers.api_encode(
        str(EXAMPLES / "face_a.png"), 0, "preview", False, handlers.new_state()
    )["api_info"]
    assert info["detector"] == "dlib"
