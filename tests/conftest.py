"""Shared pytest fixtures. Keep this file small and generic; module-specific helpers live in
the test module that uses them."""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import pytest
import torch

from diffae_app.config import AutoencoderConfig, LatentNetConfig, ModelConfig

# --------------------------------------------------------------------------- core model
# `official_dir`: facts and reference outputs of the official DiffAE release, kept in the
# repository under tests/data/official (see its README.md for what produced them).
# `tiny_config`: a factory of small random-weight configs for fast CPU tests.
# `single_thread`: run a test with one torch thread (tiny models are faster that way, and
# far faster on a busy machine); use via `pytestmark = pytest.mark.usefixtures(...)`.
# `require_asset(reason)`: skip a test whose asset is missing, except under CI=true, where
# a missing asset fails the test instead (a clean clone must run every check).

OFFICIAL_DIR = Path(__file__).resolve().parent / "data" / "official"


def running_in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def require_asset(reason: str) -> NoReturn:
    """Skip with `reason`, or fail under CI=true: there, a missing asset is a broken build."""
    if running_in_ci():
        pytest.fail(f"CI=true and a required asset is missing: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def official_dir() -> Path:
    """tests/data/official: CHECKPOINT_FORMAT.md, manifests/, reference/, variants/."""
    needed = ("reference", "manifests", "variants")
    missing = [name for name in needed if not (OFFICIAL_DIR / name).is_dir()]
    if missing:
        require_asset(f"official reference data missing under {OFFICIAL_DIR}: {missing}")
    return OFFICIAL_DIR


# --------------------------------------------------------------------------- browser tests
# Under CI=true a test marked `browser` fails when Chromium or playwright is missing, instead
# of skipping in the module's own fixture. This hook runs after the skipif markers are
# evaluated (pytest's skipping plugin is tryfirst), so a test skipped on purpose (the README
# screenshot) stays skipped, and before any fixture is set up (pytest's runner registers its
# setup hook before conftest files).

CHROMIUM = os.environ.get("DIFFAE_CHROMIUM", "/usr/bin/chromium")


def browser_missing() -> str | None:
    """Why the real-browser tests cannot run here, or None when they can."""
    if not Path(CHROMIUM).is_file() and not shutil.which("chromium"):
        return f"chromium is not installed ({CHROMIUM}; apt-get install chromium chromium-driver)"
    if importlib.util.find_spec("playwright") is None:
        return (
            "the playwright Python package is not installed (pip install -r requirements-test.txt)"
        )
    return None


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("browser") is not None and running_in_ci():
        reason = browser_missing()
        if reason is not None:
            pytest.fail(f"CI=true and the browser tests cannot run: {reason}", pytrace=False)


@pytest.fixture(scope="session")
def tiny_config() -> Callable[..., ModelConfig]:
    """Factory: `tiny_config(latent=False, **autoencoder_overrides) -> ModelConfig`.

    16-px images, 8 base channels, two levels, 16-d z_sem; with `latent=True` also a
    3-layer latent MLP over the same 16-d z_sem. Builds in milliseconds.
    """

    def make(latent: bool = False, **overrides: Any) -> ModelConfig:
        values: dict[str, Any] = {
            "image_size": 16,
            "model_channels": 8,
            "channel_mult": (1, 2),
            "attention_resolutions": (8,),
            "encoder_channel_mult": (1, 2),
            "time_embed_channels": 16,
            "z_sem_channels": 16,
        }
        values.update(overrides)
        autoencoder = AutoencoderConfig(**values)
        latent_net = None
        if latent:
            latent_net = LatentNetConfig(
                num_channels=autoencoder.z_sem_channels,
                num_hid_channels=32,
                num_layers=3,
                skip_layers=(1, 2),
                time_emb_channels=16,
            )
        return ModelConfig(
            "tiny_test",
            autoencoder,
            latent_net,
            default_render_steps=5,
            default_latent_steps=5,
        )

    return make


@pytest.fixture(scope="module")
def single_thread():
    """One intra-op torch thread for the duration of a test module, restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# --------------------------------------------------------------------------- studio (editing,
# pipeline, CLI)
# `studio_bundle`: a tiny32 bundle with random weights, a random latent DPM and a classifier
# artefact fitted with scikit-learn on encoded SynthFaces images, saved once per test session.
# `bundled_model_dir`: the bundled default model (assets/models/synthfaces64), skipped while it
# does not exist. A random-weight model renders noise: test properties, not looks.

STUDIO_TRAIN_FACES = 160  # SynthFaces seeds 0..159 fit the fixture's classifier
BUNDLED_MODEL_DIR = Path(__file__).resolve().parents[1] / "assets" / "models" / "synthfaces64"


@pytest.fixture(scope="session")
def studio_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of a tiny32 bundle (32 px, 64-d z_sem) with latent DPM and `synthfaces` classifier."""
    from sklearn.linear_model import LogisticRegression

    from diffae_app.classifier import AttributeClassifier
    from diffae_app.config import preset
    from diffae_app.data.synthfaces import ATTRIBUTES, generate_batch
    from diffae_app.diffae import DiffAE
    from diffae_app.models import AutoencoderNet, LatentNet

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # far faster for a tiny model on a busy machine
    try:
        config = preset("tiny32")
        with torch.random.fork_rng():
            torch.manual_seed(1234)
            autoencoder = AutoencoderNet(config.autoencoder)
            latent_net = LatentNet(config.latent_net)
        width = config.autoencoder.z_sem_channels
        model = DiffAE(
            config,
            autoencoder,
            latent_net=latent_net,
            z_mean=torch.zeros(width),
            z_std=torch.ones(width),
        )
        images, labels = generate_batch(range(STUDIO_TRAIN_FACES), config.autoencoder.image_size)
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        z = torch.cat([model.encode(x[i : i + 60]) for i in range(0, len(x), 60)]).cpu()
        z_mean, z_std = z.mean(0), z.std(0)
        features = ((z - z_mean) / z_std).double().numpy()
        rows, biases = [], []
        for column in range(len(ATTRIBUTES)):
            fit = LogisticRegression(C=1.0, max_iter=2000).fit(features, labels[:, column])
            rows.append(torch.from_numpy(fit.coef_[0]).float())
            biases.append(float(fit.intercept_[0]))
        classifier = AttributeClassifier(
            attribute_names=ATTRIBUTES,
            weight=torch.stack(rows),
            bias=torch.tensor(biases),
            z_mean=z_mean,
            z_std=z_std,
            source="tests: random tiny32 encoder + scikit-learn",
        )
        model = DiffAE(
            config,
            autoencoder,
            latent_net=latent_net,
            z_mean=z_mean,
            z_std=z_std,
            classifiers={"synthfaces": classifier},
        )
        return model.save_pretrained(tmp_path_factory.mktemp("studio") / "tiny32_bundle")
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def bundled_model_dir() -> Path:
    """assets/models/synthfaces64 (the bundled default model); skips while it is not built
    (fails under CI=true: the repository ships it)."""
    if not (BUNDLED_MODEL_DIR / "config.json").is_file():
        require_asset(f"bundled model not built yet ({BUNDLED_MODEL_DIR} has no config.json)")
    return BUNDLED_MODEL_DIR


# `studio`: a Studio on the tiny bundle, then on the bundled model (skipped while it is not
# built); `tiny_studio`: the tiny one alone. Module scope: a module's tests share its caches.


@pytest.fixture(scope="module", params=["tiny32", "synthfaces64"])
def studio(request: pytest.FixtureRequest, detector):
    from diffae_app.studio import Studio

    name = "studio_bundle" if request.param == "tiny32" else "bundled_model_dir"
    return Studio.load(request.getfixturevalue(name), device="cpu", detector=detector)


@pytest.fixture(scope="module")
def tiny_studio(studio_bundle: Path, detector):
    from diffae_app.studio import Studio

    return Studio.load(studio_bundle, device="cpu", detector=detector)


# --------------------------------------------------------------------------- photos, detector
# `astronaut`, `grace`: the real test photos, read from installed packages (never committed).
# `two_faces`: both side by side. `detector`: one dlib detector for the whole session (its
# 100 MB model loads once). `no_network`: any attempt to reach the network fails the test
# loudly; modules that load models or detectors use it (`pytestmark`), since weights must
# never download. It is not autouse: the browser tests talk to a local server.


@pytest.fixture(scope="session")
def astronaut():
    from PIL import Image
    from skimage import data as skimage_data

    return Image.fromarray(skimage_data.astronaut())


@pytest.fixture(scope="session")
def grace():
    from matplotlib import cbook

    from diffae_app.imaging import load_image

    return load_image(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


@pytest.fixture(scope="session")
def two_faces(astronaut, grace):
    """Both sample photos side by side at the same height (951×512)."""
    from PIL import Image

    scaled = grace.resize((round(grace.width * 512 / grace.height), 512), Image.Resampling.LANCZOS)
    pair = Image.new("RGB", (astronaut.width + scaled.width, 512))
    pair.paste(astronaut, (0, 0))
    pair.paste(scaled, (astronaut.width, 0))
    return pair


@pytest.fixture(scope="session")
def detector():
    import numpy as np

    from diffae_app.align import DlibDetector

    detector = DlibDetector()
    detector.detect(np.zeros((8, 8, 3), np.uint8))  # load the model once, in setup
    return detector


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    import huggingface_hub.constants

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the test suite must not touch the network")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads the variable once, at import; another test module may have
    # imported it already without the variable, so set the parsed flag too.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
