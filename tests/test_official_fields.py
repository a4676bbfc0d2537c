"""Official TrainConfig fields that no reference case changes: each is checked against the
official code's formula (written out here from phizaz/diffae@00c57d3) or against a
reference case it must reduce to."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from diffae_app import DiffAE
from diffae_app.checkpoints import load_official, read_official
from diffae_app.config import AutoencoderConfig, LatentNetConfig
from diffae_app.models import AutoencoderNet, LatentNet
from diffae_app.models.blocks import AttentionBlock

from .conftest import OFFICIAL_DIR

pytestmark = pytest.mark.usefixtures("single_thread")

BASE = OFFICIAL_DIR / "variants" / "base.ckpt"


def _base_with(tmp_path: Path, changes: dict[str, Any], drop: tuple[str, ...] = ()) -> Path:
    state = read_official(BASE)
    hparams = {k: v for k, v in state["hyper_parameters"].items() if k not in drop}
    hparams.update(changes)
    path = tmp_path / "changed.ckpt"
    torch.save({"state_dict": dict(state["state_dict"]), "hyper_parameters": hparams}, path)
    return path


# --------------------------------------------------------------------------- attention


def _official_attention(qkv: torch.Tensor, heads: int, new_order: bool) -> torch.Tensor:
    """QKVAttention (new order) / QKVAttentionLegacy of the official model/blocks.py."""
    bs, width, length = qkv.shape
    ch = width // (3 * heads)
    if new_order:
        q, k, v = qkv.chunk(3, dim=1)
        q, k, v = (a.reshape(bs * heads, ch, length) for a in (q, k, v))
    else:
        q, k, v = qkv.reshape(bs * heads, ch * 3, length).split(ch, dim=1)
    scale = 1 / math.sqrt(math.sqrt(ch))
    weight = torch.softmax(torch.einsum("bct,bcs->bts", q * scale, k * scale), dim=-1)
    return torch.einsum("bts,bcs->bct", weight, v).reshape(bs, -1, length)


@pytest.mark.parametrize("new_order", [False, True], ids=["legacy", "new_order"])
@pytest.mark.parametrize("heads", [1, 2, 4])
def test_attention_matches_official_qkv_orders(heads: int, new_order: bool) -> None:
    torch.manual_seed(heads)
    block = AttentionBlock(8, heads, new_order=new_order).eval()
    torch.nn.init.normal_(block.proj_out.weight)
    x = torch.randn(2, 8, 4, 4)
    with torch.no_grad():
        flat = x.reshape(2, 8, 16)
        expected = flat + block.proj_out(
            _official_attention(block.qkv(block.norm(flat)), heads, new_order)
        )
        torch.testing.assert_close(block(x), expected.reshape(x.shape), atol=1e-5, rtol=1e-5)


def test_head_channels_set_the_number_of_heads() -> None:
    config = AutoencoderConfig(
        image_size=16,
        model_channels=8,
        channel_mult=(1, 2),
        encoder_channel_mult=(1, 2),
        attention_resolutions=(8,),
        num_heads=1,
        num_head_channels=4,
        new_attention_order=True,
        time_embed_channels=16,
        z_sem_channels=16,
    )
    net = AutoencoderNet(config)
    heads = {m.qkv.in_channels: m.num_heads for m in net.modules() if isinstance(m, AttentionBlock)}
    assert heads == {16: 4}  # the 16-channel blocks (level 1 and middle) get 16 // 4 heads
    assert all(m.new_order for m in net.modules() if isinstance(m, AttentionBlock))


def test_model_conf_attention_settings_are_read(tmp_path: Path) -> None:
    state = read_official(BASE)
    hparams = dict(state["hyper_parameters"])
    hparams["model_conf"] = {
        **hparams["model_conf"],
        "num_head_channels": 2,
        "use_new_attention_order": True,
    }
    path = tmp_path / "heads.ckpt"
    torch.save({"state_dict": dict(state["state_dict"]), "hyper_parameters": hparams}, path)
    auto = load_official(path).config.autoencoder
    assert (auto.num_head_channels, auto.new_attention_order) == (2, True)


# --------------------------------------------------------------------------- resampling


def test_plain_resampling_without_conv_has_no_parameters() -> None:
    """conv_resample=False with resblock_updown=False: avg-pool down, nearest up."""
    common: dict[str, Any] = dict(
        image_size=16,
        model_channels=8,
        channel_mult=(1, 2),
        encoder_channel_mult=(1, 2),
        attention_resolutions=(8,),
        time_embed_channels=16,
        z_sem_channels=16,
        resblock_updown=False,
    )
    with_conv = AutoencoderNet(AutoencoderConfig(**common))
    plain = AutoencoderNet(AutoencoderConfig(**common, conv_resample=False))
    extra = set(with_conv.state_dict()) - set(plain.state_dict())
    assert extra == {
        "input_blocks.3.0.op.weight",
        "input_blocks.3.0.op.bias",
        "output_blocks.2.2.conv.weight",
        "output_blocks.2.2.conv.bias",
        "encoder.input_blocks.3.0.op.weight",
        "encoder.input_blocks.3.0.op.bias",
    }
    x = torch.randn(1, 8, 8, 8)
    down = plain.input_blocks[3][0]
    torch.testing.assert_close(down(x), torch.nn.functional.avg_pool2d(x, 2))
    up = plain.output_blocks[2][2]  # [ResBlock, attention at 8 px, Upsample]
    torch.testing.assert_close(up(x), x.repeat_interleave(2, 2).repeat_interleave(2, 3))


# --------------------------------------------------------------------------- latent net


def test_latent_time_mlp_and_output_activation() -> None:
    """num_time_layers Linears with the activation between, after the last only with
    time_last_act; last_act on the output (official MLPSkipNet)."""
    config = LatentNetConfig(
        num_channels=4,
        num_hid_channels=6,
        num_layers=2,
        skip_layers=(1,),
        time_emb_channels=8,
        activation="tanh",
        last_act="tanh",
        num_time_layers=3,
        time_last_act=True,
    )
    net = LatentNet(config).eval()
    kinds = [type(m).__name__ for m in net.time_embed]
    assert kinds == ["Linear", "Tanh", "Linear", "Tanh", "Linear", "Tanh"]
    out = net(torch.randn(3, 4), torch.tensor([1, 50, 900]))
    assert out.abs().max() < 1  # tanh on the output


# --------------------------------------------------------------------------- samplers


def test_rescaled_timesteps_and_other_T(tmp_path: Path) -> None:
    """T=500 with rescale_timesteps: betas scale by 1000/T, 'ddimN' spaces over 500 steps,
    and the networks see t * 1000 / T as float (the official _WrappedModel)."""
    path = _base_with(
        tmp_path,
        {"T": 500, "beatgans_rescale_timesteps": True, "latent_rescale_timesteps": True},
    )
    model = DiffAE.from_official(path)
    assert model.config.diffusion.num_timesteps == model.config.latent_diffusion.num_timesteps
    seen: list[torch.Tensor] = []
    prepare_time = model.autoencoder.prepare_time
    model.autoencoder.prepare_time = lambda t: seen.append(t) or prepare_time(t)
    model.render(torch.randn(1, 3, 32, 32), torch.randn(1, 16), T=5)
    assert seen[0].dtype == torch.float32
    assert seen[0].tolist() == [0.0, 200.0, 400.0, 600.0, 800.0]  # kept 0..400, times 2
    latent_seen: list[torch.Tensor] = []
    forward = model.latent_net.forward
    model.latent_net.forward = lambda z, t: latent_seen.append(t) or forward(z, t)
    model.sample_z(1, 4, noise=torch.randn(1, 16))
    assert [float(t[0]) for t in latent_seen] == [750.0, 500.0, 250.0, 0.0]  # 375..0, times 2


def test_latent_znormalize_false_samples_raw_codes(tmp_path: Path) -> None:
    """latent_znormalize=False: the sampled code is the latent DDIM's output itself, so it
    equals the base case's normalised latent sample."""
    refs = torch.load(OFFICIAL_DIR / "variants" / "base_refs.pt", weights_only=True)
    model = DiffAE.from_official(_base_with(tmp_path, {"latent_znormalize": False}))
    z = model.sample_z(2, 5, noise=refs["sample_latent_noise"])
    ratio = ((z - refs["latent_sample_T5_normalized"]).abs()).max()
    assert ratio <= 1e-4 * max(1.0, refs["latent_sample_T5_normalized"].abs().max().item())


def test_latent_clip_sample_clips_the_predicted_code(tmp_path: Path) -> None:
    model = DiffAE.from_official(_base_with(tmp_path, {"latent_clip_sample": True}))
    assert model.config.latent_diffusion.clip_denoised
    steps: list[dict] = []
    model.sample_z(2, 5, noise=torch.randn(2, 16) * 3, callback=steps.append)
    assert all(s["pred_x0"].abs().max() <= 1 for s in steps)


def test_cosine_image_schedule_is_read(tmp_path: Path) -> None:
    model = DiffAE.from_official(_base_with(tmp_path, {"beta_scheduler": "cosine"}))
    assert model.config.diffusion.beta_schedule == "cosine"
    steps: list[dict] = []
    model.render(torch.randn(1, 3, 32, 32), torch.randn(1, 16), T=5, callback=steps.append)
    assert [s["t"] for s in steps] == [800, 600, 400, 200, 0]
    # alpha_bar(t) of the cosine schedule, as the official betas_for_alpha_bar discretises it
    betas = [min(1 - _cos_bar((i + 1) / 1000) / _cos_bar(i / 1000), 0.999) for i in range(1000)]
    alpha_bar = torch.tensor(betas, dtype=torch.float64).neg().add(1).cumprod(0)
    schedule = model._schedule(5)
    torch.testing.assert_close(
        torch.from_numpy(schedule.alpha_bar), alpha_bar[[0, 200, 400, 600, 800]], rtol=1e-12, atol=0
    )


def _cos_bar(s: float) -> float:
    return math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2


# --------------------------------------------------------------------------- where fields come from


def test_model_conf_alone_describes_a_file_without_top_level_fields(tmp_path: Path) -> None:
    top_level = (
        "img_size",
        "net_ch",
        "net_ch_mult",
        "net_attn",
        "style_ch",
        "net_beatgans_embed_channels",
        "net_enc_channel_mult",
    )
    path = _base_with(tmp_path, {}, drop=top_level)
    assert load_official(path).config.autoencoder == load_official(BASE).config.autoencoder


def test_stated_latent_net_type_none_drops_the_latent_dpm() -> None:
    model = DiffAE.from_official(BASE, official_fields={"net_latent_net_type": "none"})
    assert not model.has_latent_dpm


def test_stated_fields_override_stored_ones() -> None:
    config = load_official(BASE, official_fields={"T_eval": 9, "latent_T_eval": 7}).config
    assert (config.default_render_steps, config.default_latent_steps) == (9, 7)


def test_classifier_without_z_normalisation_reads_raw_codes(tmp_path: Path) -> None:
    """manipulate_znormalize=False: no statistics in the file, the classifier sees raw z."""
    from diffae_app.checkpoints import load_official_classifier

    weight = torch.randn(40, 16)
    state = {
        "state_dict": {"classifier.weight": weight, "classifier.bias": torch.zeros(40)},
        "hyper_parameters": {"manipulate_znormalize": False},
    }
    torch.save(state, tmp_path / "cls.ckpt")
    classifier = load_official_classifier(tmp_path / "cls.ckpt")
    assert torch.equal(classifier.z_mean, torch.zeros(16))
    assert torch.equal(classifier.z_std, torch.ones(16))
    state["hyper_parameters"] = {"manipulate_znormalize": True}
    torch.save(state, tmp_path / "cls2.ckpt")
    with pytest.raises(ValueError, match="conds_mean"):
        load_official_classifier(tmp_path / "cls2.ckpt")


@pytest.mark.parametrize(
    "name",
    [
        "ffhq256_autoenc",
        "ffhq256_autoenc_latent",
        "ffhq128_autoenc_130M",
        "ffhq128_autoenc_latent",
        "bedroom128_autoenc",
        "horse128_autoenc",
    ],
)
def test_released_template_values_give_the_presets(name: str) -> None:
    """The manifests' template values, read as fields, describe exactly our presets."""
    import json

    from diffae_app.config import preset
    from diffae_app.official_fields import official_config

    values = json.loads((OFFICIAL_DIR / "manifests" / f"{name}.json").read_text())
    described = official_config(
        values["config_values"], name=name, has_latent_weights=name.endswith("_latent")
    )
    assert described.config == preset(name)
    assert described.latent_znormalize == name.endswith("_latent")
