"""Every training stage end to end on the tiny32 preset, on the CPU, in this process:
autoencoder -> encode_dataset -> latent_dpm -> classifiers -> export, then the bundle loads in
the editing pipeline (DiffAE.from_pretrained: encode, render, sample, classifier logits).
Also the one-line `error:` exits of every script."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from diffae_app import DiffAE
from diffae_app.checkpoints import read_bundle_config
from diffae_app.classifier import AttributeClassifier
from diffae_app.config import preset
from diffae_app.data.synthfaces import ATTRIBUTES, write_image_folder
from diffae_app.training.latents import load_latents

pytestmark = pytest.mark.usefixtures("single_thread")

TRAIN = Path(__file__).resolve().parents[1] / "train"
NUM_IMAGES = 16


def _script(name: str):
    """A train/ script as a module, so its main(argv) runs in this process."""
    spec = importlib.util.spec_from_file_location(f"train_{name}", TRAIN / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(name: str, *args: object) -> None:
    code = _script(name).main([str(a) for a in args])
    # Accelerate keeps process-wide singletons; each script run starts from a clean state.
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    assert code == 0, f"train/{name}.py exited with {code}"


def _tags(log_dir: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir)).Reload()
    return set(events.Tags()["scalars"]) | set(events.Tags()["images"])


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Runs stages 1-4 and the export once; returns the root folder."""
    root = tmp_path_factory.mktemp("pipeline")
    write_image_folder(root / "data" / "faces", 0, NUM_IMAGES, 32)
    (root / "data" / "faces" / "attributes.csv").rename(root / "attributes.csv")
    common = ["--threads", "1", "--log-every", "1"]
    _run(
        "autoencoder",
        "--data", root / "data", "--preset", "tiny32", "--run-dir", root / "ae",
        "--steps", 4, "--batch-size", 4, "--save-every", 2, "--ema-warmup", "--p2-gamma", 1,
        "--offset-noise", 0.1, *common,
    )  # fmt: skip
    _run(
        "encode_dataset",
        "--model", root / "ae" / "bundle", "--data", root / "data",
        "--out", root / "latents.safetensors", "--batch-size", 8, "--threads", 1,
    )  # fmt: skip
    _run(
        "latent_dpm",
        "--latents", root / "latents.safetensors", "--autoencoder", root / "ae" / "bundle",
        "--run-dir", root / "latent", "--steps", 4, "--batch-size", 8, "--save-every", 2,
        "--ema-warmup", *common,
    )  # fmt: skip
    _run(
        "classifiers",
        "--latents", root / "latents.safetensors", "--labels", root / "attributes.csv",
        "--out", root / "classifiers" / "synthfaces.safetensors", "--held-out", 0.25,
    )  # fmt: skip
    _run(
        "export",
        root / "latent", "--out", root / "final",
        "--classifier", root / "classifiers" / "synthfaces.safetensors",
    )  # fmt: skip
    return root


@pytest.mark.slow
def test_autoencoder_run_writes_options_logs_checkpoints_and_a_loadable_bundle(
    pipeline: Path,
) -> None:
    run = pipeline / "ae"
    options = json.loads((run / "options.json").read_text())
    assert options["stage"] == "autoencoder" and options["loop"]["steps"] == 4
    assert options["stage_options"]["model"]["name"] == "tiny32"
    assert options["stage_options"]["p2_gamma"] == 1.0
    assert options["stage_options"]["offset_noise"] == 0.1
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "state-00000002.pt",
        "state-00000004.pt",
    ]
    state = torch.load(run / "checkpoints" / "state-00000004.pt", weights_only=True)
    assert {"model", "ema", "optimizer", "scaler", "step", "data_order", "rng"} <= set(state)
    assert {"train/loss", "train/lr", "samples/input_zsem_inverted"} <= _tags(run / "logs")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["ranks_seen"] == [0] and summary["export"].endswith("bundle")
    model = DiffAE.from_pretrained(run / "bundle")  # autoencoder only: no latent DPM announced
    assert not model.has_latent_dpm
    assert model.encode(torch.zeros(1, 3, 32, 32)).shape == (1, 64)


@pytest.mark.slow
def test_latents_hold_every_image_in_dataset_order_with_their_stats(pipeline: Path) -> None:
    codes = load_latents(pipeline / "latents.safetensors")
    assert codes.ids == tuple(f"faces/{i:08d}.png" for i in range(NUM_IMAGES))
    assert codes.z_sem.shape == (NUM_IMAGES, 64)
    assert torch.allclose(codes.z_mean, codes.z_sem.mean(0), atol=1e-6)
    assert torch.allclose(codes.z_std, codes.z_sem.std(0), atol=1e-6)  # unbiased
    # The codes are the EMA encoder's.
    model = DiffAE.from_pretrained(pipeline / "ae" / "bundle")
    from diffae_app.training.data import ImageFolder

    images = ImageFolder(pipeline / "data", 32)
    x = torch.stack([images[0], images[5]])
    assert torch.allclose(model.encode(x), codes.z_sem[[0, 5]], atol=1e-5)


@pytest.mark.slow
def test_latent_run_exports_autoencoder_plus_latent_dpm(pipeline: Path) -> None:
    run = pipeline / "latent"
    options = json.loads((run / "options.json").read_text())
    loop = options["loop"]
    assert (loop["optimizer"], loop["weight_decay"], loop["ema_decay"]) == ("adamw", 0.01, 0.9999)
    assert options["stage_options"]["model"]["latent_diffusion"]["beta_schedule"] == "const0.008"
    assert options["stage_options"]["model"]["latent_diffusion"]["loss"] == "l1"
    assert {"train/loss", "eval/sample_std", "samples/latent_dpm"} <= _tags(run / "logs")
    bundle = run / "bundle"
    assert read_bundle_config(bundle).latent_net.num_hid_channels == 128  # tiny32's latent net
    stats = load_file(str(bundle / "latent_net.safetensors"))
    codes = load_latents(pipeline / "latents.safetensors")
    assert torch.equal(stats["z_mean"], codes.z_mean) and torch.equal(stats["z_std"], codes.z_std)
    # Same autoencoder weights as the stage-1 bundle.
    copied = load_file(str(bundle / "autoencoder.safetensors"))
    original = load_file(str(pipeline / "ae" / "bundle" / "autoencoder.safetensors"))
    assert copied.keys() == original.keys()
    assert all(torch.equal(copied[k], v) for k, v in original.items())
    ema = torch.load(run / "checkpoints" / "state-00000004.pt", weights_only=True)["ema"]
    assert all(torch.equal(stats[k], v) for k, v in ema.items())


@pytest.mark.slow
def test_final_bundle_loads_in_the_editing_pipeline_and_renders(pipeline: Path) -> None:
    model = DiffAE.from_pretrained(pipeline / "final")
    assert model.has_latent_dpm and list(model.classifiers) == ["synthfaces"]
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 32, 32, generator=generator) * 2 - 1
    z = model.encode(x)
    images = model.render(torch.randn(2, 3, 32, 32, generator=generator), z, T=4)
    assert images.shape == (2, 3, 32, 32) and 0 <= images.min() and images.max() <= 1
    samples = model.sample(2, T=4, T_latent=4, generator=generator)
    assert samples.shape == (2, 3, 32, 32) and torch.isfinite(samples).all()
    classifier = model.classifiers["synthfaces"]
    assert set(classifier.attribute_names) <= set(ATTRIBUTES)
    logits = classifier.logits(z)
    assert logits.shape == (2, len(classifier.attribute_names)) and torch.isfinite(logits).all()
    umask = os.umask(0)
    os.umask(umask)
    for path in (pipeline / "final", pipeline / "final" / "latent_net.safetensors"):
        default = 0o777 if path.is_dir() else 0o666
        assert path.stat().st_mode & 0o777 == default & ~umask  # readable by other users
    card = (pipeline / "final" / "README.md").read_text()
    assert '"step": 4' in card and "| attribute | held-out n |" in card
    assert "Resolved training options" in card and "<local>/data" in card
    assert str(pipeline) not in card  # a card names no local paths (issue 13)


@pytest.mark.slow
def test_classifier_artefact_matches_the_latents_and_can_go_into_a_bundle(
    pipeline: Path, capsys: pytest.CaptureFixture
) -> None:
    artefact = AttributeClassifier.load(pipeline / "classifiers" / "synthfaces.safetensors")
    codes = load_latents(pipeline / "latents.safetensors")
    assert torch.equal(artefact.z_mean, codes.z_mean)
    for name in artefact.attribute_names:
        m = artefact.metrics[name]
        assert m["n_train"] + m["n_test"] == NUM_IMAGES and m["n_test"] == 4
        assert {"accuracy", "balanced_accuracy", "auroc", "weight_norm", "logit_std"} <= set(m)
    _run(
        "classifiers",
        "--latents", pipeline / "latents.safetensors", "--labels", pipeline / "attributes.csv",
        "--bundle", pipeline / "ae" / "bundle", "--name", "faces", "--held-out", 0.25,
        "--attributes", "Smiling,Eyeglasses",
    )  # fmt: skip
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("attribute") and "Eyeglasses" in out
    model = DiffAE.from_pretrained(pipeline / "ae" / "bundle")
    assert model.classifiers["faces"].attribute_names == ("Smiling", "Eyeglasses")
    (pipeline / "ae" / "bundle" / "classifiers" / "faces.safetensors").unlink()


@pytest.mark.slow
def test_export_any_checkpoint_of_a_run(pipeline: Path) -> None:
    early = pipeline / "ae_step2"
    _run(
        "export", pipeline / "ae", "--out", early,
        "--checkpoint", pipeline / "ae" / "checkpoints" / "state-00000002.pt",
    )  # fmt: skip
    ema = torch.load(pipeline / "ae" / "checkpoints" / "state-00000002.pt", weights_only=True)[
        "ema"
    ]
    weights = load_file(str(early / "autoencoder.safetensors"))
    assert all(torch.equal(weights[k[len("net.") :]], v) for k, v in ema.items())
    assert '"step": 2' in (early / "README.md").read_text()
    DiffAE.from_pretrained(early)
    # The latent run re-exported at its step-2 checkpoint: same autoencoder, other latent net.
    _run(
        "export", pipeline / "latent", "--out", pipeline / "latent_step2",
        "--checkpoint", pipeline / "latent" / "checkpoints" / "state-00000002.pt",
    )  # fmt: skip
    assert DiffAE.from_pretrained(pipeline / "latent_step2").has_latent_dpm


@pytest.mark.slow
def test_export_with_a_chosen_sampler_and_float16_latent_net(pipeline: Path, capsys) -> None:
    out = pipeline / "latent_fp16"
    sampler = '{"spacing": "power", "power": 1.25, "inversion_fixed_point_iterations": 1}'
    _run(
        "export",
        pipeline / "latent",
        "--out",
        out,
        "--sampler",
        sampler,
        "--latent-dtype",
        "float16",
    )
    stored = load_file(str(out / "latent_net.safetensors"))
    assert stored["z_mean"].dtype == torch.float32  # statistics stay exact
    assert {v.dtype for k, v in stored.items() if not k.startswith("z_")} == {torch.float16}
    model = DiffAE.from_pretrained(out)
    assert model.config.sampler.spacing == "power" and model.latent_net is not None
    assert next(model.latent_net.parameters()).dtype == torch.float32
    full = load_file(str(pipeline / "latent" / "bundle" / "latent_net.safetensors"))
    assert all(torch.allclose(stored[k].float(), v, atol=1e-3, rtol=1e-3) for k, v in full.items())
    bad = _error_of(
        capsys, "export", pipeline / "latent", "--out", out, "--sampler", '{"spacing": "x"}'
    )
    assert "spacing" in bad


def _error_of(capsys: pytest.CaptureFixture, name: str, *args: object) -> str:
    code = _script(name).main([str(a) for a in args])
    err = capsys.readouterr().err
    assert code == 2, f"{name}: exit {code}, stderr {err!r}"
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_offset_noise_gives_each_image_and_channel_a_random_colour_offset() -> None:
    autoencoder = _script("autoencoder")
    config = preset("tiny32")
    means = {}
    for offset in (0.0, 0.5):
        stage = autoencoder.AutoencoderStage(config, "synthfaces", offset_noise=offset)
        noise = stage.training_noise(torch.Size([256, 3, 32, 32]), torch.Generator().manual_seed(0))
        means[offset] = noise.mean(dim=(2, 3)).std().item()
    assert means[0.0] == pytest.approx(1 / 32, rel=0.15)  # i.i.d.: the mean averages out
    assert means[0.5] == pytest.approx((0.5**2 + 1 / 32**2) ** 0.5, rel=0.15)


def test_scripts_report_user_errors_in_one_line(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "missing"
    assert "no such bundle or run folder" in _error_of(
        capsys, "encode_dataset", "--model", missing, "--data", tmp_path, "--out", tmp_path / "l"
    )
    assert "does not exist; run train/encode_dataset.py" in _error_of(
        capsys, "latent_dpm", "--latents", missing, "--autoencoder", missing,
        "--run-dir", tmp_path / "r", "--steps", 1,
    )  # fmt: skip
    assert "does not exist" in _error_of(
        capsys, "classifiers", "--latents", missing, "--labels", missing, "--out", tmp_path / "c"
    )
    assert "no options.json" in _error_of(capsys, "export", tmp_path, "--out", tmp_path / "o")
    for option, message in (("--p2-gamma", "gamma >= 0"), ("--offset-noise", "must be >= 0")):
        assert message in _error_of(
            capsys, "autoencoder", "--data", "synthfaces", "--preset", "tiny32",
            "--run-dir", tmp_path / "ae", "--steps", 1, option, -1,
        )  # fmt: skip
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "options.json").write_text('{"stage": "autoencoder"}')
    assert "no checkpoints yet" in _error_of(
        capsys, "export", tmp_path / "run", "--out", tmp_path / "o"
    )
