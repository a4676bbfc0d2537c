"""The top-level classifiers/ folder (issue 15): the CLI saves custom attributes there, convert
can place the official classifier there, the app lists the ones fitting the loaded model."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest
import torch

from diffae_app.classifier import (
    CELEBA_ATTRIBUTES,
    AttributeClassifier,
    classifiers_dir,
    find_classifiers,
)
from diffae_app.cli import main as cli_main
from diffae_app.data.synthfaces import ATTRIBUTES
from diffae_app.diffae import DiffAE
from diffae_app.studio import Studio, fit_fingerprint
from diffae_app.ui import saved
from diffae_app.ui.handlers import MODES, Handlers
from diffae_app.ui.layout import SliderBank
from diffae_app.ui.models import ModelRegistry

from .test_app_fixtures import EXAMPLES, REPO, build_tiny_bundle

pytestmark = pytest.mark.usefixtures("single_thread")

FACES = [EXAMPLES / f"face_{k}.png" for k in "abcd"]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny32")


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    target = tmp_path / "classifiers"
    monkeypatch.setenv("DIFFAE_CLASSIFIERS", str(target))
    return target


def test_the_repository_folder_is_the_default_and_documents_the_format(monkeypatch) -> None:
    monkeypatch.delenv("DIFFAE_CLASSIFIERS", raising=False)
    assert classifiers_dir() == REPO / "classifiers"
    readme = (REPO / "classifiers" / "README.md").read_text()
    for word in ("model_fingerprint", "attribute_names", "z_mean", "direction", "convert"):
        assert word in readme


def test_fit_fingerprint_is_the_same_at_every_precision(bundle: Path, tmp_path: Path) -> None:
    prints = {
        p: fit_fingerprint(DiffAE.from_pretrained(bundle, precision=p))
        for p in ("float32", "bfloat16", "float16")
    }
    assert len(set(prints.values())) == 1, prints
    other = build_tiny_bundle(tmp_path / "other")  # same config and seed: same weights
    assert fit_fingerprint(DiffAE.from_pretrained(other)) == prints["float32"]
    model = DiffAE.from_pretrained(other)
    with torch.no_grad():  # fine-tuning moves the float32-kept output layer
        next(p for n, p in model.autoencoder.named_parameters() if n.startswith("out.")).add_(0.01)
    assert fit_fingerprint(model) != prints["float32"]


def test_cli_custom_saves_into_classifiers_by_default(bundle: Path, folder: Path, capsys) -> None:
    code = cli_main(
        [
            "custom",
            "--model",
            str(bundle),
            "--quiet",
            "--name",
            "Cheer",
            "--aligned",
            "--positive",
            *map(str, FACES[:2]),
            "--negative",
            *map(str, FACES[2:]),
        ]
    )
    assert code == 0, capsys.readouterr().err
    studio = Studio.load(bundle, device="cpu")
    (path,) = folder.glob("*.safetensors")
    assert path.name == f"Cheer-{studio.fit_fingerprint}.safetensors"
    assert AttributeClassifier.load(path).model_fingerprint == studio.fit_fingerprint
    assert find_classifiers(studio.fit_fingerprint) == [path]


def test_app_lists_only_fitting_artefacts_and_adds_them(bundle: Path, folder: Path) -> None:
    studio = Studio.load(bundle, device="cpu")
    fitted = studio.custom_attribute(FACES[:2], FACES[2:], "Cheer", aligned=True)
    fitted.save(folder / "Cheer-mine.safetensors")
    foreign = AttributeClassifier(
        attribute_names=("Alien",),
        weight=fitted.weight.clone(),
        bias=fitted.bias.clone(),
        z_mean=fitted.z_mean,
        z_std=fitted.z_std,
        model_fingerprint="0123456789ab",
    )
    foreign.save(folder / "Alien-0123456789ab.safetensors")
    (folder / "broken.safetensors").write_bytes(b"junk")

    registry = ModelRegistry(lambda spec: Studio.load(spec, device="cpu"), str(bundle))
    handlers = Handlers(registry, SliderBank([*ATTRIBUTES, *CELEBA_ATTRIBUTES]))
    choices = saved.saved_choices(registry.default)
    assert [path for _, path in choices] == [str(folder / "Cheer-mine.safetensors")]
    assert "Cheer" in choices[0][0]

    state = handlers.new_state()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = saved.on_add(handlers, [choices[0][1]], MODES[0], state)
    assert out["state"].custom_names == ("Cheer",)
    assert "Cheer" in out["state"].slots
    import gradio as gr

    for path in (folder / "Alien-0123456789ab.safetensors", Path("/etc/passwd")):
        with pytest.raises(gr.Error, match="not among the saved ones"):
            saved.on_add(handlers, [str(path)], MODES[0], state)


def test_convert_places_the_official_classifier(
    official_dir: Path, tmp_path: Path, folder: Path, capsys
) -> None:
    from diffae_app.convert import main as convert_main

    checkpoints = tmp_path / "checkpoints"
    for sub, name in (
        ("tiny_autoenc_latent", "tiny_autoenc_latent.ckpt"),
        ("tiny_autoenc_cls", "tiny_cls.ckpt"),
    ):
        (checkpoints / sub).mkdir(parents=True)
        shutil.copyfile(official_dir / "reference" / name, checkpoints / sub / "last.ckpt")
    out = tmp_path / "bundle"
    assert convert_main([str(checkpoints), str(out), "--classifier-to"]) == 0
    fingerprint = Studio.load(out, device="cpu").fit_fingerprint
    (placed,) = find_classifiers(fingerprint)
    assert placed.parent == folder and placed.name == f"celebahq-{fingerprint}.safetensors"
    assert AttributeClassifier.load(placed).attribute_names == CELEBA_ATTRIBUTES
    assert str(placed) in capsys.readouterr().out
