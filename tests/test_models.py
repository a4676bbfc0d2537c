"""Networks: official parameter layout (manifests of the released checkpoints) and forward
passes against the official reference outputs of the tiny checkpoints."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from diffae_app.checkpoints import (
    check_state_dict,
    load_official,
    load_official_classifier,
    official_to_ours,
    split_official_state_dict,
)
from diffae_app.classifier import CELEBA_ATTRIBUTES
from diffae_app.config import PRESET_NAMES, preset
from diffae_app.models import AutoencoderNet, LatentNet
from diffae_app.models.blocks import AttentionBlock, timestep_embedding

pytestmark = pytest.mark.usefixtures("single_thread")

MANIFESTS = (
    "ffhq256_autoenc",
    "ffhq256_autoenc_latent",
    "ffhq128_autoenc_130M",
    "ffhq128_autoenc_latent",
    "bedroom128_autoenc",
    "horse128_autoenc",
)
FORWARD_TOL = 1e-4  # REFERENCE_CASES.md: encoder / single UNet or latent-net forward


def _manifest(official_dir: Path, name: str) -> dict:
    return json.loads((official_dir / "manifests" / f"{name}.json").read_text())


def _meta_modules(name: str) -> tuple[AutoencoderNet, LatentNet | None]:
    config = preset(name)
    with torch.device("meta"):
        autoencoder = AutoencoderNet(config.autoencoder)
        latent = LatentNet(config.latent_net) if config.latent_net is not None else None
    return autoencoder, latent


def _numel(module: torch.nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def _expected_keys(autoencoder: AutoencoderNet, latent: LatentNet | None) -> dict[str, tuple]:
    """Our tensors as 'autoencoder:<key>' / 'latent_net:<key>' -> shape."""
    ours = {f"autoencoder:{k}": tuple(v.shape) for k, v in autoencoder.state_dict().items()}
    if latent is not None:
        ours.update({f"latent_net:{k}": tuple(v.shape) for k, v in latent.state_dict().items()})
    return ours


def _our_name(official_key: str) -> str:
    """The documented mapping of a `model.`/`ema_model.`-stripped key onto our modules."""
    name = official_to_ours(official_key)
    if name.startswith("latent_net."):
        return "latent_net:" + name[len("latent_net.") :]
    return "autoencoder:" + name


# --------------------------------------------------------------------------- manifests


@pytest.mark.parametrize("name", MANIFESTS)
def test_manifest_keys_map_one_to_one(official_dir: Path, name: str) -> None:
    manifest = _manifest(official_dir, name)
    entries = {k: tuple(shape) for k, (shape, _dtype) in manifest["state_dict"].items()}
    assert len(entries) == manifest["num_keys"]
    assert {dtype for _shape, dtype in manifest["state_dict"].values()} == {"float32"}
    autoencoder, latent = _meta_modules(name)
    ours = _expected_keys(autoencoder, latent)

    # Keys outside the two weight branches: x_T is training-only (dropped); conds_mean/std
    # become the bundle's latent z_mean/z_std, flattened to (512,).
    top = {k for k in entries if not k.startswith(("model.", "ema_model."))}
    if latent is None:
        assert top == {"x_T"}
    else:
        assert top == {"x_T", "conds_mean", "conds_std"}
        assert entries["conds_mean"] == entries["conds_std"] == (1, latent.config.num_channels)

    aliases = {frozenset(pair) for pair in manifest["aliased_keys"]}
    for prefix in ("model.", "ema_model."):
        hits: dict[str, list[str]] = {}
        for key, shape in entries.items():
            if not key.startswith(prefix):
                continue
            ours_key = _our_name(key[len(prefix) :])
            assert ours_key in ours, f"{key} maps to {ours_key}, which our modules lack"
            assert ours[ours_key] == shape, f"{key}: manifest {shape} vs ours {ours[ours_key]}"
            hits.setdefault(ours_key, []).append(key)
        leftover = sorted(set(ours) - set(hits))
        assert not leftover, f"our tensors without an official key: {leftover[:5]}"
        shared = [frozenset(keys) for keys in hits.values() if len(keys) > 1]
        # Only the documented latent-net aliases (cond_layers.1 == linear_emb) share a tensor.
        assert all(len(s) == 2 and s in aliases for s in shared), shared
        assert len(shared) == sum(1 for pair in aliases if next(iter(pair)).startswith(prefix))
    expected_pairs = 2 * 2 * (latent.config.num_layers - 1) if latent is not None else 0
    assert len(aliases) == expected_pairs  # weight + bias, model + ema_model, per layer

    # The same mapping through the loader's code path (expanded zeros: shapes, no memory).
    fake: dict[str, torch.Tensor] = {}
    for key, shape in entries.items():
        alias_of = next(
            (other for pair in aliases if key in pair for other in pair if other in fake), None
        )
        fake[key] = fake[alias_of] if alias_of else torch.zeros(()).expand(shape)
    for use_ema in (True, False):
        auto_sd, latent_sd = split_official_state_dict(fake, use_ema=use_ema)
        check_state_dict(autoencoder, auto_sd, source=f"{name} manifest")
        if latent is not None:
            check_state_dict(latent, latent_sd, source=f"{name} manifest")
        else:
            assert latent_sd == {}


@pytest.mark.parametrize("name", MANIFESTS)
def test_manifest_param_counts(official_dir: Path, name: str) -> None:
    counts = _manifest(official_dir, name)["param_counts"]
    autoencoder, latent = _meta_modules(name)
    encoder = _numel(autoencoder.encoder)
    assert encoder == counts["encoder"]
    assert _numel(autoencoder) - encoder == counts["unet_without_semantic_encoder_and_latent_net"]
    assert _numel(latent) == counts["latent_net"]
    total = _numel(autoencoder) + _numel(latent)
    assert total == counts["model_total"]
    assert round(total / 2**20, 2) == counts["official_print_Mi"]


@pytest.mark.parametrize("name", MANIFESTS)
def test_preset_matches_manifest_config_values(official_dir: Path, name: str) -> None:
    values = _manifest(official_dir, name)["config_values"]
    config = preset(name)
    auto = config.autoencoder
    assert auto.image_size == values["img_size"]
    assert auto.model_channels == values["net_ch"]
    assert auto.channel_mult == tuple(values["net_ch_mult"])
    assert auto.encoder_channel_mult == tuple(values["net_enc_channel_mult"])
    assert auto.attention_resolutions == tuple(values["net_attn"])
    assert auto.encoder_attention_resolutions == values["net_enc_attn"]
    assert auto.num_res_blocks == values["net_num_res_blocks"]
    assert auto.encoder_num_res_blocks == values["net_enc_num_res_blocks"]
    assert auto.time_embed_channels == values["net_beatgans_embed_channels"]
    assert auto.z_sem_channels == values["style_ch"]
    assert auto.num_heads == values["net_beatgans_attn_head"]
    assert auto.resblock_updown == values["net_resblock_updown"]
    assert auto.dropout == values["dropout"]
    assert config.diffusion.num_timesteps == values["T"]
    assert config.diffusion.beta_schedule == values["beta_scheduler"]
    assert config.default_render_steps == values["T_eval"]
    if config.latent_net is None:
        assert values["net_latent_net_type"] == "none"
        return
    lat = config.latent_net
    assert values["net_latent_net_type"] == "skip"
    assert lat.num_layers == values["net_latent_layers"]
    assert lat.skip_layers == tuple(values["net_latent_skip_layers"])
    assert lat.num_hid_channels == values["net_latent_num_hid_channels"]
    assert lat.use_norm == values["net_latent_use_norm"]
    assert lat.condition_bias == values["net_latent_condition_bias"]
    assert lat.time_emb_channels == values["net_latent_time_emb_channels"]
    assert config.latent_diffusion.beta_schedule == values["latent_beta_scheduler"]
    assert config.latent_diffusion.loss == values["latent_loss_type"]
    assert config.latent_diffusion.clip_denoised == values["latent_clip_sample"]
    assert config.default_latent_steps == values["latent_T_eval"]


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_presets_without_manifest_compose_from_manifested_parts(
    official_dir: Path, name: str
) -> None:
    """bedroom/horse *_latent = their autoencoder manifest + the released latent MLP."""
    if (official_dir / "manifests" / f"{name}.json").is_file():
        pytest.skip("covered by the manifest tests")
    base = name.removesuffix("_latent")
    if not name.endswith("_latent") or not (official_dir / "manifests" / f"{base}.json").is_file():
        pytest.skip(f"no official manifest for {name} or its base autoencoder")
    autoencoder, latent = _meta_modules(name)
    ref_auto, _ = _meta_modules(base)
    _, ref_latent = _meta_modules("ffhq128_autoenc_latent")
    assert _expected_keys(autoencoder, latent) == _expected_keys(ref_auto, ref_latent)


def test_classifier_manifest_maps_onto_artefact(official_dir: Path, tmp_path: Path) -> None:
    manifest = _manifest(official_dir, "ffhq256_autoenc_cls")
    entries = {k: tuple(shape) for k, (shape, _dtype) in manifest["state_dict"].items()}
    assert set(entries) == {
        "conds_mean",
        "conds_std",
        "classifier.weight",
        "classifier.bias",
        "ema_classifier.weight",
        "ema_classifier.bias",
    }
    generator = torch.Generator().manual_seed(0)
    sd = {k: torch.randn(shape, generator=generator) for k, shape in entries.items()}
    sd["conds_std"] = sd["conds_std"].abs() + 0.5
    path = tmp_path / "cls.ckpt"
    torch.save({"state_dict": sd, "global_step": 1}, path)
    for use_ema, prefix in ((False, "classifier."), (True, "ema_classifier.")):
        cls = load_official_classifier(path, use_ema=use_ema)
        assert cls.attribute_names == CELEBA_ATTRIBUTES
        assert cls.attribute_names[33] == "Wavy_Hair"
        assert torch.equal(cls.weight, sd[f"{prefix}weight"])
        assert torch.equal(cls.bias, sd[f"{prefix}bias"])
        assert torch.equal(cls.z_mean, sd["conds_mean"].reshape(-1))
        assert torch.equal(cls.z_std, sd["conds_std"].reshape(-1))
        assert cls.weight.numel() + cls.bias.numel() == manifest["param_counts"]["classifier"]


# --------------------------------------------------------------------------- blocks


def test_timestep_embedding_is_cos_then_sin() -> None:
    t = torch.tensor([0, 7, 999])
    emb = timestep_embedding(t, 8)
    freqs = torch.exp(-math.log(10000.0) * torch.arange(4) / 4)
    args = t[:, None].float() * freqs
    torch.testing.assert_close(emb, torch.cat([args.cos(), args.sin()], 1))
    assert emb.shape == (3, 8) and torch.equal(emb[0], torch.tensor([1.0] * 4 + [0.0] * 4))


def test_multi_head_attention_splits_channels() -> None:
    torch.manual_seed(0)
    block = AttentionBlock(8, num_heads=2)
    x = torch.randn(2, 8, 4, 4)
    assert block(x).shape == x.shape
    with pytest.raises(ValueError, match="heads"):
        AttentionBlock(6, num_heads=4)


def test_tiny_forward_shapes(tiny_config) -> None:
    config = tiny_config(latent=True)
    torch.manual_seed(0)
    net, latent = AutoencoderNet(config.autoencoder).eval(), LatentNet(config.latent_net).eval()
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    z = net.encoder(x)
    assert z.shape == (3, 16) and z.dtype == torch.float32
    eps = net(x, torch.tensor([0, 500, 999]), z)
    assert eps.shape == x.shape and torch.isfinite(eps).all()
    assert latent(z, torch.tensor([1, 2, 3])).shape == (3, 16)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_inference_reuses_buffers_without_changing_a_bit(tiny_config, dtype: torch.dtype) -> None:
    """Without autograd the ResBlocks work in place; encoder and UNet outputs stay identical."""
    torch.manual_seed(0)
    net = AutoencoderNet(tiny_config().autoencoder).eval().to(dtype)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    t = torch.tensor([10, 700])
    with torch.no_grad():
        z_fast = net.encoder(x.to(dtype))
        eps_fast = net(x, t, z_fast)
    z_ref = net.encoder(x.to(dtype))  # autograd on: the out-of-place path
    eps_ref = net(x, t, z_ref)
    assert torch.equal(z_fast, z_ref.detach()) and torch.equal(eps_fast, eps_ref.detach())


# --------------------------------------------------------------------------- official numerics


def _check(name: str, got: torch.Tensor, ref: torch.Tensor, tol: float) -> None:
    err = (got.float() - ref.float()).abs().max().item()
    print(f"REF {name}: max_abs {err:.2e} (tol {tol:.0e})")
    assert got.shape == ref.shape, f"{name}: shape {tuple(got.shape)} vs {tuple(ref.shape)}"
    assert err <= tol, f"{name}: max abs error {err:.3e} > {tol:.0e}"


@pytest.mark.parametrize("case", ["tiny_autoenc", "tiny_autoenc_latent"])
@pytest.mark.parametrize("use_ema", [True, False], ids=["ema", "nonema"])
@torch.inference_mode()
def test_forward_passes_match_official(official_dir: Path, case: str, use_ema: bool) -> None:
    ref_dir = official_dir / "reference"
    refs = torch.load(ref_dir / f"{case}_refs.pt", weights_only=True)
    weights = load_official(ref_dir / f"{case}.ckpt", use_ema=use_ema)
    with torch.device("meta"):
        net = AutoencoderNet(weights.config.autoencoder)
    net.load_state_dict(weights.autoencoder, assign=True)
    net.eval()
    suffix = "" if use_ema else "_nonema"
    _check(
        f"{case}.enc_cond{suffix}", net.encoder(refs["x"]), refs[f"enc_cond{suffix}"], FORWARD_TOL
    )

    x_t, cond = refs["unet_xt"], refs["enc_cond"]
    ts = {"t0": 0, "t500": 500, "t999": 999, "t_mixed": refs["unet_t_mixed"]}
    if not use_ema:
        ts = {"t500": 500}
    for label, t in ts.items():
        t = t if isinstance(t, torch.Tensor) else torch.full((2,), t)
        key = f"unet_pred_{label}{suffix}"
        _check(f"{case}.{key}", net(x_t, t, cond), refs[key], FORWARD_TOL)

    if weights.latent_net is None:
        return
    with torch.device("meta"):
        latent = LatentNet(weights.config.latent_net)
    latent.load_state_dict(weights.latent_net, assign=True)
    latent.eval()
    for t in (0, 500, 999) if use_ema else (500,):
        key = f"latent_pred_t{t}{suffix}"
        got = latent(refs["latent_z"], torch.full((2,), t))
        _check(f"{case}.{key}", got, refs[key], FORWARD_TOL)
