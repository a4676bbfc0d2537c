"""Official checkpoint -> bundle conversion: layout, source discovery, CLI hook, and a
full-size Lightning-format checkpoint converted within a memory budget."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from diffae_app import DiffAE
from diffae_app.checkpoints import (
    CheckpointError,
    load_official,
    load_official_classifier,
    read_official,
)
from diffae_app.classifier import CELEBA_ATTRIBUTES
from diffae_app.config import preset
from diffae_app.convert import convert_official, find_official_checkpoints, main

pytestmark = pytest.mark.usefixtures("single_thread")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def checkpoints(official_dir: Path, tmp_path: Path) -> Path:
    """An official-style `checkpoints/` folder: latent model + its classifier."""
    root = tmp_path / "checkpoints"
    for folder, name in (
        ("tiny_autoenc_latent", "tiny_autoenc_latent.ckpt"),
        ("tiny_autoenc_cls", "tiny_cls.ckpt"),
    ):
        (root / folder).mkdir(parents=True)
        shutil.copyfile(official_dir / "reference" / name, root / folder / "last.ckpt")
    return root


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118


def _one_line_error(call, *args, **kwargs) -> str:
    with pytest.raises(CheckpointError) as exc:
        call(*args, **kwargs)
    assert "\n" not in str(exc.value)
    return str(exc.value)


# --------------------------------------------------------------------------- tiny checkpoints


def test_converts_checkpoints_folder(checkpoints: Path, tmp_path: Path) -> None:
    model_ckpt = checkpoints / "tiny_autoenc_latent" / "last.ckpt"
    out = convert_official(checkpoints, tmp_path / "bundle")
    assert out == tmp_path / "bundle"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "README.md",
        "autoencoder.safetensors",
        "classifiers/celebahq.safetensors",
        "config.json",
        "latent_net.safetensors",
    ]
    # EMA weights only, bit-exact, under our names; aliases collapsed; stats flattened.
    state = read_official(model_ckpt)
    sd = state["state_dict"]
    auto = _tensors(out / "autoencoder.safetensors")
    assert auto.keys() == {
        k[len("ema_model.") :] for k in sd if k.startswith("ema_model.encoder")
    } | {
        k[len("ema_model.") :]
        for k in sd
        if k.startswith("ema_model.")
        and not k.startswith(("ema_model.encoder", "ema_model.latent_net"))
    }
    assert all(torch.equal(v, sd[f"ema_model.{k}"]) for k, v in auto.items())
    latent = _tensors(out / "latent_net.safetensors")
    assert torch.equal(latent.pop("z_mean"), sd["conds_mean"].reshape(-1))
    assert torch.equal(latent.pop("z_std"), sd["conds_std"].reshape(-1))
    assert all(torch.equal(v, sd[f"ema_model.latent_net.{k}"]) for k, v in latent.items())
    assert not any("cond_layers" in k for k in latent)

    # Reloads to the same model as the direct official load.
    bundle = DiffAE.from_pretrained(out)
    direct = DiffAE.from_official(model_ckpt)
    assert bundle.config == direct.config
    a, b = bundle.autoencoder.state_dict(), direct.autoencoder.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert torch.equal(bundle.encode(x), direct.encode(x))

    cls = bundle.classifiers["celebahq"]
    official_cls = load_official_classifier(checkpoints / "tiny_autoenc_cls" / "last.ckpt")
    assert cls.attribute_names == CELEBA_ATTRIBUTES and len(cls.attribute_names) == 40
    for field in ("weight", "bias", "z_mean", "z_std"):
        assert torch.equal(getattr(cls, field), getattr(official_cls, field))

    card = (out / "README.md").read_text()
    assert str(model_ckpt.resolve()) in card
    assert f"| global_step | {state['global_step']} |" in card
    assert "`tiny_autoenc_latent`" in card and "DiffAE.from_pretrained" in card
    assert "Wavy_Hair" in card and "EMA only" in card


def test_single_file_and_model_folder(checkpoints: Path, tmp_path: Path) -> None:
    folder = checkpoints / "tiny_autoenc_latent"
    assert find_official_checkpoints(folder) == (folder / "last.ckpt", None)
    assert find_official_checkpoints(folder / "last.ckpt") == (folder / "last.ckpt", None)
    out = convert_official(folder, tmp_path / "from_folder")
    assert not (out / "classifiers").exists()
    cls_path = checkpoints / "tiny_autoenc_cls" / "last.ckpt"
    out = convert_official(folder / "last.ckpt", tmp_path / "from_file", classifier=cls_path)
    assert (out / "classifiers" / "celebahq.safetensors").is_file()
    out = convert_official(checkpoints, tmp_path / "no_cls", classifier=False)
    assert not (out / "classifiers").exists()


def test_checkpoints_folder_discovery(official_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "checkpoints"
    ref = official_dir / "reference"

    def add(folder: str, name: str) -> Path:
        (root / folder).mkdir(parents=True)
        return Path(shutil.copyfile(ref / name, root / folder / "last.ckpt"))

    root.mkdir()
    assert "no official checkpoint" in _one_line_error(find_official_checkpoints, root)
    cls = add("ffhq256_autoenc_cls", "tiny_cls.ckpt")
    assert "only classifier" in _one_line_error(find_official_checkpoints, root)
    plain = add("ffhq256_autoenc", "tiny_autoenc.ckpt")
    assert find_official_checkpoints(root) == (plain, cls)
    latent = add("ffhq256_autoenc_latent", "tiny_autoenc_latent.ckpt")
    assert find_official_checkpoints(root) == (latent, cls)  # the latent one contains both
    add("horse128_autoenc", "tiny_autoenc.ckpt")
    message = _one_line_error(find_official_checkpoints, root)
    assert (
        "ffhq256_autoenc_latent, horse128_autoenc" in message and "pass one model folder" in message
    )


def test_output_folder_rules(checkpoints: Path, tmp_path: Path) -> None:
    out = convert_official(checkpoints, tmp_path / "bundle", classifier=False)
    assert "not empty" in _one_line_error(convert_official, checkpoints, out)
    convert_official(checkpoints, out, overwrite=True)
    assert (out / "classifiers" / "celebahq.safetensors").is_file()
    precious = tmp_path / "photos"
    precious.mkdir()
    (precious / "me.jpg").write_bytes(b"jpeg")
    message = _one_line_error(convert_official, checkpoints, precious, overwrite=True)
    assert "not a bundle" in message and (precious / "me.jpg").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert convert_official(checkpoints, empty) == empty
    assert not list(tmp_path.glob(".*"))  # no staging folders left behind


def test_conversion_errors_name_the_file(checkpoints: Path, tmp_path: Path) -> None:
    ckpt = checkpoints / "tiny_autoenc_latent" / "last.ckpt"
    message = _one_line_error(
        convert_official, ckpt, tmp_path / "a", config="ffhq256_autoenc_latent"
    )
    assert (
        message.startswith(f"{ckpt} (autoencoder) does not fit") and "shape mismatches" in message
    )
    assert "unknown preset" in _one_line_error(
        convert_official, ckpt, tmp_path / "b", config="nope"
    )
    bad_cls = tmp_path / "cls.ckpt"
    sd = {
        "classifier.weight": torch.zeros(40, 16),
        "classifier.bias": torch.zeros(40),
        "conds_mean": torch.zeros(1, 16),
        "conds_std": torch.ones(1, 16),
    }
    torch.save({"state_dict": sd}, bad_cls)
    message = _one_line_error(convert_official, ckpt, tmp_path / "c", classifier=bad_cls)
    assert message.startswith(str(bad_cls)) and "16-d z_sem" in message
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()


def test_main_cli_hook(checkpoints: Path, tmp_path: Path, capsys) -> None:
    assert main([str(checkpoints), str(tmp_path / "bundle")]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {tmp_path / 'bundle'}"
    garbage = tmp_path / "last.ckpt"
    garbage.write_text("not a checkpoint")
    assert main([str(garbage), str(tmp_path / "other")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {garbage}: not a PyTorch checkpoint")
    assert main([str(checkpoints), str(tmp_path / "bundle")]) == 2  # exists
    assert main([str(checkpoints), str(tmp_path / "bundle"), "--overwrite", "--no-classifier"]) == 0
    assert not (tmp_path / "bundle" / "classifiers").exists()
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2


# --------------------------------------------------------------------------- full size


_WRITER = r"""
import json, sys, types
import torch

manifest_path, hparams_path, out_path = sys.argv[1:4]
# Lightning is not installed; register its module path so torch.save pickles the class
# by reference, exactly as Lightning 1.4.5 does for the `callbacks` key.
names = ["pytorch_lightning", "pytorch_lightning.callbacks",
         "pytorch_lightning.callbacks.model_checkpoint"]
for name in names:
    sys.modules[name] = types.ModuleType(name)
ModelCheckpoint = type("ModelCheckpoint", (), {"__module__": names[-1]})
sys.modules[names[-1]].ModelCheckpoint = ModelCheckpoint

manifest = json.load(open(manifest_path))
aliases = {b: a for a, b in manifest["aliased_keys"]}
generator = torch.Generator().manual_seed(0)
state_dict = {}
for key, (shape, dtype) in manifest["state_dict"].items():
    assert dtype == "float32"
    state_dict[key] = (state_dict[aliases[key]] if key in aliases
                       else torch.randn(shape, generator=generator))
num_params = sum(1 for k in state_dict if k.startswith("model."))
torch.save({
    "epoch": 41,
    "global_step": 130001,
    "pytorch-lightning_version": "1.4.5",
    "state_dict": state_dict,
    "callbacks": {ModelCheckpoint: {
        "monitor": None, "best_model_score": None, "current_score": None,
        "best_model_path": "checkpoints/ffhq256_autoenc/epoch=41-step=130000.ckpt",
        "dirpath": "checkpoints/ffhq256_autoenc"}},
    "optimizer_states": [{
        "state": {0: {"step": torch.tensor(130000.0), "exp_avg": torch.zeros(8),
                      "exp_avg_sq": torch.zeros(8)}},
        "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.999), "eps": 1e-8,
                          "weight_decay": 0, "amsgrad": False,
                          "params": list(range(num_params))}]}],
    "lr_schedulers": [],
    "native_amp_scaling_state": {"scale": 65536.0, "growth_factor": 2.0,
                                 "backoff_factor": 0.5, "growth_interval": 2000,
                                 "_growth_tracker": 0},
    "hparams_name": None,
    "hyper_parameters": json.load(open(hparams_path)),
}, out_path)
"""

_CONVERTER = r"""
import json, resource, sys
import torch  # baseline: a python that imported torch

baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
from diffae_app.convert import convert_official

convert_official(sys.argv[1], sys.argv[2])
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"baseline_kib": baseline, "peak_kib": peak}))
"""


def _ffhq256_hparams(official_dir: Path) -> dict:
    """hyper_parameters as the release stores them: the tiny file's, with FFHQ256 values."""
    hparams = dict(
        read_official(official_dir / "reference" / "tiny_autoenc.ckpt")["hyper_parameters"]
    )
    values = json.loads((official_dir / "manifests" / "ffhq256_autoenc.json").read_text())[
        "config_values"
    ]
    hparams.update({k: v for k, v in values.items() if k in hparams})
    model_conf = dict(hparams["model_conf"])
    model_conf.update(
        image_size=values["img_size"],
        model_channels=values["net_ch"],
        channel_mult=values["net_ch_mult"],
        enc_channel_mult=values["net_enc_channel_mult"],
        attention_resolutions=values["net_attn"],
        embed_channels=values["net_beatgans_embed_channels"],
        resnet_cond_channels=values["net_beatgans_resnet_cond_channels"],
        enc_out_channels=values["style_ch"],
    )
    hparams["model_conf"] = model_conf
    return json.loads(json.dumps(hparams))  # tuples -> lists, as JSON-able as the original


@pytest.mark.slow
def test_full_size_lightning_checkpoint_converts_within_memory_budget(
    official_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "checkpoints" / "ffhq256_autoenc"
    folder.mkdir(parents=True)
    ckpt, bundle_dir = folder / "last.ckpt", tmp_path / "ffhq256_bundle"
    hparams_path = tmp_path / "hparams.json"
    hparams_path.write_text(json.dumps(_ffhq256_hparams(official_dir)))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    try:
        manifest = official_dir / "manifests" / "ffhq256_autoenc.json"
        subprocess.run(
            [sys.executable, "-c", _WRITER, str(manifest), str(hparams_path), str(ckpt)],
            check=True,
            env=env,
        )
        size = ckpt.stat().st_size
        assert size > 1.3e9

        result = subprocess.run(
            [sys.executable, "-c", _CONVERTER, str(ckpt), str(bundle_dir)],
            check=True,
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        rss = json.loads(result.stdout.strip().splitlines()[-1])
        extra = (rss["peak_kib"] - rss["baseline_kib"]) * 1024
        ratio = extra / size
        print(
            f"RSS conversion: +{extra / 2**20:.0f} MiB over baseline for a {size / 2**20:.0f} MiB file, ratio {ratio:.2f}"
        )
        assert ratio < 2.0

        state = read_official(ckpt)
        assert state["global_step"] == 130001
        assert "pytorch_lightning" not in sys.modules
        sd = state["state_dict"]
        model = DiffAE.from_pretrained(bundle_dir)
        assert model.config.autoencoder == preset("ffhq256_autoenc").autoencoder
        assert model.config.name == "ffhq256_autoenc" and not model.has_latent_dpm
        reloaded = model.autoencoder.state_dict()
        ema_keys = [k for k in sd if k.startswith("ema_model.")]
        assert len(reloaded) == len(ema_keys) == (len(sd) - 1) // 2
        for key in ema_keys:
            assert torch.equal(reloaded[key[len("ema_model.") :]], sd[key]), key
        assert "| global_step | 130001 |" in (bundle_dir / "README.md").read_text()
        del model, reloaded, sd, state
        # A direct official load agrees with the bundle (same EMA weights, same config).
        assert load_official(ckpt).config.autoencoder == preset("ffhq256_autoenc").autoencoder
    finally:
        shutil.rmtree(tmp_path / "checkpoints", ignore_errors=True)
        shutil.rmtree(bundle_dir, ignore_errors=True)
