"""Every official variant case (tests/data/official/variants: tiny checkpoints written by the
official code, each changing architecture or sampler fields of one base) loads through
`DiffAE.from_official` and reproduces the official outputs at REFERENCE_CASES.md's
tolerances; and field values we cannot honour are refused in one line naming the field.

Cases are discovered from the folder, so a case added there is tested without code changes.
Fields a checkpoint cannot store (enum fields, dropped from `hyper_parameters`) are stated
through `official_fields`, exactly those and no others.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from diffae_app import DiffAE
from diffae_app.checkpoints import CheckpointError, load_official, read_official
from diffae_app.official_fields import ENUM_FIELDS

from .conftest import OFFICIAL_DIR

pytestmark = pytest.mark.usefixtures("single_thread")

VARIANTS = OFFICIAL_DIR / "variants"
CASES = sorted(p.stem for p in VARIANTS.glob("*.ckpt"))
FORWARD_TOL = 1e-4  # encoder, single UNet / latent-net forward
DDIM_TOL = 1e-3  # DDIM render, inversion, sample chain
LATENT_REL_TOL = 1e-4  # latent DDIM: |err| <= 1e-4 * max(1, |ref|)


def _unstored_fields(case: str, refs: dict) -> dict[str, Any]:
    """The case's changed fields that its checkpoint cannot record (enum fields)."""
    hparams = read_official(VARIANTS / f"{case}.ckpt")["hyper_parameters"]
    return {
        field: value
        for field, value in refs["meta"]["changed"].items()
        if field not in hparams and field in ENUM_FIELDS
    }


def _check(name: str, got: torch.Tensor, ref: torch.Tensor, tol: float) -> None:
    assert got.shape == ref.shape, f"{name}: shape {tuple(got.shape)} vs {tuple(ref.shape)}"
    err = (got.float() - ref.float()).abs().max().item()
    assert err <= tol, f"{name}: max |diff| {err:.3e} > {tol:g}"


def _check_latent(name: str, got: torch.Tensor, ref: torch.Tensor) -> None:
    assert got.shape == ref.shape, name
    ratio = ((got - ref).abs() / ref.abs().clamp(min=1)).max().item()
    assert ratio <= LATENT_REL_TOL, f"{name}: error / max(1, |ref|) {ratio:.3e}"


def test_every_case_is_present() -> None:
    """The folder holds what its README lists (a partial copy must not pass silently)."""
    summary = [json.loads(line) for line in (VARIANTS / "summary.jsonl").read_text().splitlines()]
    assert sorted(row["variant"] for row in summary) == CASES
    assert len(CASES) >= 17


@pytest.mark.parametrize("case", CASES)
def test_variant_matches_official(official_dir: Path, case: str) -> None:
    refs = torch.load(VARIANTS / f"{case}_refs.pt", weights_only=True)
    meta = refs["meta"]
    model = DiffAE.from_official(
        VARIANTS / f"{case}.ckpt", official_fields=_unstored_fields(case, refs) or None
    )
    n = refs["x"].shape[0]

    z = model.encode(refs["x"])
    _check("enc_cond", z, refs["enc_cond"], FORWARD_TOL)
    eps = model.noise_predictor()(refs["render_xT"], refs["unet_t_mixed"], refs["enc_cond"])
    _check("unet_pred_t_mixed", eps, refs["unet_pred_t_mixed"], FORWARD_TOL)
    T, T_latent = meta["T_render"], meta["T_latent"]
    x_T = model.encode_stochastic(refs["x"], refs["enc_cond"], T=T)
    _check(f"encode_stochastic_T{T}", x_T, refs[f"encode_stochastic_T{T}"], DDIM_TOL)
    image = model.render(refs["render_xT"], refs["enc_cond"], T=T)
    _check(f"render_T{T}", image, refs[f"render_T{T}"], DDIM_TOL)

    assert model.has_latent_dpm
    with torch.inference_mode():
        t = torch.full((n,), 500, dtype=torch.int64)
        pred = model.latent_net(refs["latent_z"], t)
    _check("latent_pred_t500", pred, refs["latent_pred_t500"], FORWARD_TOL)
    _check_latent("conds_mean", model.z_mean[None], refs["conds_mean"])
    _check_latent("conds_std", model.z_std[None], refs["conds_std"])

    steps: list[dict] = []
    cond = model.sample_z(n, T_latent, noise=refs["sample_latent_noise"], callback=steps.append)
    traj = torch.stack([s["x"] for s in steps])
    key = f"latent_sample_T{T_latent}"
    _check_latent(f"{key}_traj", traj, refs[f"{key}_traj"])
    _check_latent(f"{key}_normalized", steps[-1]["x"], refs[f"{key}_normalized"])
    _check_latent(f"{key}_cond", cond, refs[f"{key}_cond"])
    assert [s["t"] for s in steps] == meta["ddim_latent"]["timestep_map"][::-1]

    sample_key = f"sample_T{T}_T{T_latent}"
    if sample_key in refs:
        # The sample.ipynb path: image noise first, then latent noise, from one seeded RNG.
        generator = torch.Generator().manual_seed(meta["seed_sample"])
        images = model.sample(n, T=T, T_latent=T_latent, generator=generator)
        _check(sample_key, images, refs[sample_key], DDIM_TOL)
        _check(
            sample_key + " (explicit chain)",
            model.render(refs["sample_xT"], cond, T=T),
            refs[sample_key],
            DDIM_TOL,
        )


def test_unstored_field_is_needed_and_honoured() -> None:
    """latent_act_lrelu records its activation nowhere: loaded without the field, the latent
    DPM is SiLU and misses the reference; stated, it matches (the test above)."""
    refs = torch.load(VARIANTS / "latent_act_lrelu_refs.pt", weights_only=True)
    assert _unstored_fields("latent_act_lrelu", refs) == {
        "net_latent_activation": "Activation.lrelu"
    }
    plain = DiffAE.from_official(VARIANTS / "latent_act_lrelu.ckpt")
    assert plain.config.latent_net.activation == "silu"
    with torch.inference_mode():
        pred = plain.latent_net(refs["latent_z"], torch.full((2,), 500))
    assert (pred - refs["latent_pred_t500"]).abs().max() > 1e-2
    stated = load_official(
        VARIANTS / "latent_act_lrelu.ckpt", official_fields={"net_latent_activation": "lrelu"}
    )
    assert stated.config.latent_net.activation == "lrelu"


def test_release_shaped_latent_checkpoint_reads_top_level_fields() -> None:
    """A released *_autoenc_latent file stores a stale model_conf (latent_net_conf None)."""
    hparams = read_official(VARIANTS / "release_stale_model_conf.ckpt")["hyper_parameters"]
    assert hparams["model_conf"]["latent_net_conf"] is None
    config = load_official(VARIANTS / "release_stale_model_conf.ckpt").config
    assert config == load_official(VARIANTS / "base.ckpt").config.replace(
        name="release_stale_model_conf"
    )
    assert config.latent_net.num_layers == hparams["net_latent_layers"]


# --------------------------------------------------------------------------- refusals


def _with_fields(tmp_path: Path, changes: dict[str, Any], model_conf: dict | None = None) -> Path:
    """base.ckpt with some stored hyper-parameters changed (state_dict kept)."""
    state = read_official(VARIANTS / "base.ckpt")
    hparams = dict(state["hyper_parameters"])
    hparams.update(changes)
    if model_conf:
        hparams["model_conf"] = {**hparams["model_conf"], **model_conf}
    path = tmp_path / "changed.ckpt"
    torch.save({"state_dict": dict(state["state_dict"]), "hyper_parameters": hparams}, path)
    return path


REFUSED_STORED = [
    ({"net_beatgans_resnet_two_cond": False}, "net_beatgans_resnet_two_cond=False"),
    ({"net_enc_pool": "depthconv"}, "net_enc_pool='depthconv'"),
    ({"beta_scheduler": "quadratic"}, "beta_scheduler='quadratic'"),
    ({"latent_beta_scheduler": "const0.02"}, "latent_beta_scheduler='const0.02'"),
    ({"T_sampler": "importance"}, "T_sampler='importance'"),
    ({"diffusion_type": "default"}, "diffusion_type='default'"),
    ({"net_beatgans_attn_head": 3}, "net_beatgans_attn_head=3"),
    ({"net_beatgans_resnet_cond_channels": 12}, "net_beatgans_resnet_cond_channels=12"),
    ({"img_size": 34}, "img_size=34"),
    ({"net_latent_layers": 1}, "net_latent_layers=1"),
    ({"net_latent_skip_layers": None}, "net_latent_skip_layers=None"),
    ({"net_num_input_res_blocks": "3"}, "net_num_input_res_blocks='3'"),
]
REFUSED_MODEL_CONF = [
    ({"num_heads_upsample": 2}, "num_heads_upsample=2"),
    ({"dims": 3}, "dims=3"),
    ({"num_classes": 10}, "num_classes=10"),
    ({"input_channel_mult": [1, 2, 2]}, "input_channel_mult=[1, 2, 2]"),
]
REFUSED_STATED = [
    ({"net_latent_activation": "gelu"}, "net_latent_activation='gelu'"),
    ({"net_latent_net_last_act": "softplus"}, "net_latent_net_last_act='softplus'"),
    ({"beatgans_gen_type": "ddpm"}, "beatgans_gen_type='ddpm'"),
    ({"latent_model_mean_type": "x_start"}, "latent_model_mean_type='x_start'"),
    ({"model_name": "beatgans_ddpm"}, "model_name='beatgans_ddpm'"),
    ({"train_mode": "manipulate"}, "train_mode='manipulate'"),
    ({"net_latent_net_type": "mlp"}, "net_latent_net_type='mlp'"),
    ({"not_a_field": 1}, "not_a_field=1"),
]


def _one_line(call, *args, **kwargs) -> str:
    with pytest.raises(CheckpointError) as exc:
        call(*args, **kwargs)
    message = str(exc.value)
    assert "\n" not in message and "missing" not in message and "unexpected" not in message
    return message


@pytest.mark.parametrize(("changes", "named"), REFUSED_STORED)
def test_unsupported_stored_value_is_refused_by_name(tmp_path, changes, named) -> None:
    path = _with_fields(tmp_path, changes)
    assert named in _one_line(DiffAE.from_official, path)


@pytest.mark.parametrize(("changes", "named"), REFUSED_MODEL_CONF)
def test_unsupported_model_conf_value_is_refused_by_name(tmp_path, changes, named) -> None:
    path = _with_fields(tmp_path, {}, model_conf=changes)
    assert named in _one_line(DiffAE.from_official, path)


@pytest.mark.parametrize(("fields", "named"), REFUSED_STATED)
def test_unsupported_stated_value_is_refused_by_name(fields, named) -> None:
    message = _one_line(DiffAE.from_official, VARIANTS / "base.ckpt", official_fields=fields)
    assert named in message


def test_fields_with_no_effect_are_accepted() -> None:
    """checks.json's no-effect fields (measured with the official code) load, and change
    nothing but the inactive dropout rates."""
    checks = json.loads((VARIANTS / "checks.json").read_text())["no_effect_fields"]
    base = load_official(VARIANTS / "base.ckpt").config
    assert len(checks) >= 10
    for check in checks:
        config = load_official(
            VARIANTS / "base.ckpt", official_fields={check["field"]: check["value"]}
        ).config
        config = config.replace(
            autoencoder=replace(config.autoencoder, dropout=base.autoencoder.dropout),
            latent_net=replace(config.latent_net, dropout=base.latent_net.dropout),
        )
        assert config == base, check["field"]


# --------------------------------------------------------------------------- README examples


def _release_shaped_checkpoints(root: Path) -> Path:
    """An official `checkpoints/` folder shaped like the release: the latent model with a
    stale model_conf, and an attribute classifier laid out as ClsModel writes it."""
    model = root / "checkpoints" / "tiny_autoenc_latent" / "last.ckpt"
    model.parent.mkdir(parents=True)
    model.write_bytes((VARIANTS / "release_stale_model_conf.ckpt").read_bytes())
    sd = read_official(model)["state_dict"]
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(40, 16, generator=generator)
    classifier = {
        "conds_mean": sd["conds_mean"].clone(),
        "conds_std": sd["conds_std"].clone(),
        "classifier.weight": weight,
        "classifier.bias": torch.zeros(40),
        "ema_classifier.weight": weight * 0.9,
        "ema_classifier.bias": torch.zeros(40),
    }
    cls_path = root / "checkpoints" / "tiny_autoenc_cls" / "last.ckpt"
    cls_path.parent.mkdir(parents=True)
    torch.save(
        {"state_dict": classifier, "hyper_parameters": {"manipulate_znormalize": True}}, cls_path
    )
    return root / "checkpoints"


def test_readme_examples_work_on_release_shaped_files(tmp_path: Path, capsys) -> None:
    """README 'Using the real FFHQ256 model', step by step, on release-shaped files."""
    from diffae_app.convert import main as convert_main

    checkpoints = _release_shaped_checkpoints(tmp_path)
    out = tmp_path / "OUT" / "model"
    # python -m diffae_app convert checkpoints/ OUT/ffhq256
    assert convert_main([str(checkpoints), str(out)]) == 0, capsys.readouterr().err
    official = DiffAE.from_official(checkpoints / "tiny_autoenc_latent" / "last.ckpt")
    bundle = DiffAE.from_pretrained(out)
    assert bundle.config == official.config and "celebahq" in bundle.classifiers
    with_classifier = DiffAE.from_official(
        checkpoints / "tiny_autoenc_latent" / "last.ckpt",
        classifier=checkpoints / "tiny_autoenc_cls" / "last.ckpt",
    )
    assert with_classifier.classifiers["celebahq"].z_sem_channels == 16

    refs = torch.load(VARIANTS / "release_stale_model_conf_refs.pt", weights_only=True)
    x = refs["x"]
    for m in (official, bundle):
        z = m.encode(x)
        _check("enc_cond", z, refs["enc_cond"], FORWARD_TOL)
        x_T = m.encode_stochastic(x, z, T=6)
        _check("encode_stochastic_T6", x_T, refs["encode_stochastic_T6"], DDIM_TOL)
        img = m.render(refs["render_xT"], z, T=6)
        _check("render_T6", img, refs["render_T6"], DDIM_TOL)
        generator = torch.Generator().manual_seed(refs["meta"]["seed_sample"])
        imgs = m.sample(2, T=6, T_latent=5, generator=generator)
        _check("sample_T6_T5", imgs, refs["sample_T6_T5"], DDIM_TOL)


def test_convert_cli_states_unstored_fields(tmp_path: Path, capsys) -> None:
    from diffae_app.convert import main as convert_main

    src = VARIANTS / "latent_act_lrelu.ckpt"
    out = tmp_path / "lrelu"
    argv = [str(src), str(out), "--field", "net_latent_activation=lrelu"]
    assert convert_main(argv) == 0, capsys.readouterr().err
    assert DiffAE.from_pretrained(out).config.latent_net.activation == "lrelu"
    assert (
        convert_main([str(src), str(tmp_path / "x"), "--field", "net_latent_activation=gelu"]) == 2
    )
    assert "net_latent_activation='gelu'" in capsys.readouterr().err
