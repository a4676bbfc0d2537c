"""The `DiffAE` facade: official reference cases end to end, determinism and batch
invariance, bundle save/load and its error messages."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from diffae_app import DiffAE
from diffae_app.checkpoints import CheckpointError, load_official_classifier
from diffae_app.diffusion import ddim_sample, make_schedule
from diffae_app.models import AutoencoderNet, LatentNet

pytestmark = pytest.mark.usefixtures("single_thread")

# Tolerances of REFERENCE_CASES.md (float32, CPU).
FORWARD_TOL = 1e-4  # encoder, single forward, cls logits, z_sem arithmetic
DDIM_TOL = 1e-3  # T=10 render, inversion, sample chain and trajectories
CHAIN_TOL, CHAIN_MEAN_TOL = 5e-3, 1e-4  # inversion followed by render (roundtrip, manip)
LATENT_REL_TOL = 1e-4  # latent DDIM: |err| <= 1e-4 * max(1, |ref|)
WAVY_HAIR = 33


def _check(name: str, got: torch.Tensor, ref: torch.Tensor, tol: float) -> None:
    assert got.shape == ref.shape, f"{name}: shape {tuple(got.shape)} vs {tuple(ref.shape)}"
    err = (got.float() - ref.float()).abs().max().item()
    print(f"REF {name}: max_abs {err:.2e} (tol {tol:.0e})")
    assert err <= tol, f"{name}: max abs error {err:.3e} > {tol:.0e}"


def _check_chain(name: str, got: torch.Tensor, ref: torch.Tensor) -> None:
    diff = (got - ref).abs()
    print(f"REF {name}: max_abs {diff.max():.2e} mean_abs {diff.mean():.2e} (tol 5e-3 / 1e-4)")
    assert diff.max() <= CHAIN_TOL and diff.mean() <= CHAIN_MEAN_TOL, name


def _check_latent(name: str, got: torch.Tensor, ref: torch.Tensor) -> None:
    assert got.shape == ref.shape, name
    ratio = ((got - ref).abs() / ref.abs().clamp(min=1)).max().item()
    err = (got - ref).abs().max().item()
    print(f"REF {name}: max_abs {err:.2e}, max err/max(1,|ref|) {ratio:.2e} (tol 1e-4)")
    assert ratio <= LATENT_REL_TOL, f"{name}: relative error {ratio:.3e}"


def _trajectory(steps: list[dict], key: str) -> torch.Tensor:
    return torch.stack([s[key] for s in steps])


# --------------------------------------------------------------------------- official cases


@pytest.fixture(scope="module")
def autoenc(official_dir: Path) -> tuple[DiffAE, dict]:
    ref_dir = official_dir / "reference"
    model = DiffAE.from_official(
        ref_dir / "tiny_autoenc.ckpt", classifier=ref_dir / "tiny_cls.ckpt"
    )
    return model, torch.load(ref_dir / "tiny_autoenc_refs.pt", weights_only=True)


@pytest.fixture(scope="module")
def latent(official_dir: Path) -> tuple[DiffAE, dict]:
    ref_dir = official_dir / "reference"
    model = DiffAE.from_official(ref_dir / "tiny_autoenc_latent.ckpt")
    return model, torch.load(ref_dir / "tiny_autoenc_latent_refs.pt", weights_only=True)


def test_official_config_is_rebuilt_from_hparams(autoenc, latent) -> None:
    m, refs = autoenc
    meta = refs["meta"]["config"]
    assert m.config.autoencoder.model_channels == meta["net_ch"]
    assert m.config.autoencoder.time_embed_channels == meta["net_beatgans_embed_channels"] == 64
    assert m.config.default_render_steps == meta["T_eval"] == 10
    assert not m.has_latent_dpm and latent[0].has_latent_dpm
    assert (
        latent[0].config.latent_net.num_layers == latent[1]["meta"]["config"]["net_latent_layers"]
    )
    assert m.classifiers["celebahq"].attribute_names[WAVY_HAIR] == "Wavy_Hair"


@pytest.mark.parametrize("case", ["autoenc", "latent"])
def test_encode_and_invert_match_official(request, case: str) -> None:
    m, refs = request.getfixturevalue(case)
    z = m.encode(refs["x"])
    _check(f"{case}.enc_cond", z, refs["enc_cond"], FORWARD_TOL)
    x_T = m.encode_stochastic(refs["x"], z, T=10)
    _check(f"{case}.encode_stochastic_T10", x_T, refs["encode_stochastic_T10"], DDIM_TOL)


def test_render_and_trajectories_match_official(autoenc) -> None:
    m, refs = autoenc
    steps: list[dict] = []
    image = m.render(refs["render_xT"], refs["enc_cond"], T=10, callback=steps.append)
    _check("autoenc.render_T10", image, refs["render_T10"], DDIM_TOL)
    assert [s["t"] for s in steps] == list(range(900, -1, -100))
    _check(
        "autoenc.render_T10_traj_sample",
        _trajectory(steps, "x"),
        refs["render_T10_traj_sample"],
        DDIM_TOL,
    )
    _check(
        "autoenc.render_T10_traj_pred_xstart",
        _trajectory(steps, "pred_x0"),
        refs["render_T10_traj_pred_xstart"],
        DDIM_TOL,
    )
    assert 0.0 <= image.min() and image.max() <= 1.0


def test_roundtrip_matches_official(autoenc) -> None:
    m, refs = autoenc
    z = m.encode(refs["x"])
    x_T = m.encode_stochastic(refs["x"], z, T=10)
    _check_chain(
        "autoenc.roundtrip_render_T10", m.render(x_T, z, T=10), refs["roundtrip_render_T10"]
    )


def _manipulate(cls, z_sem: torch.Tensor, attribute: int, amplitude: float) -> torch.Tensor:
    """The official recipe (manipulate.ipynb / predict.py) on the classifier's own stats."""
    direction = F.normalize(cls.weight[attribute][None, :], dim=1)
    return cls.denormalize(cls.normalize(z_sem) + amplitude * math.sqrt(512) * direction)


def test_manipulation_matches_official(autoenc, official_dir: Path) -> None:
    m, refs = autoenc
    cls = m.classifiers["celebahq"]
    assert int(refs["manip_cls_id"]) == WAVY_HAIR
    z = m.encode(refs["x"])
    manip = _manipulate(cls, z, WAVY_HAIR, float(refs["manip_amplitude"]))
    _check("autoenc.manip_cond", manip, refs["manip_cond"], FORWARD_TOL)
    x_T = m.encode_stochastic(refs["x"], z, T=10)
    _check_chain("autoenc.manip_render_T10", m.render(x_T, manip, T=10), refs["manip_render_T10"])
    _check("autoenc.cls_logits", cls.logits(z), refs["cls_logits"], FORWARD_TOL)
    ema = load_official_classifier(official_dir / "reference" / "tiny_cls.ckpt", use_ema=True)
    _check("autoenc.cls_logits_ema", ema.logits(z), refs["cls_logits_ema"], FORWARD_TOL)


def test_latent_sampling_matches_official(latent) -> None:
    m, refs = latent
    torch.testing.assert_close(m.z_mean, refs["conds_mean"].reshape(-1), rtol=0, atol=0)
    torch.testing.assert_close(m.z_std, refs["conds_std"].reshape(-1), rtol=0, atol=0)
    d = m.config.latent_diffusion
    steps: list[dict] = []
    with torch.inference_mode():
        z_norm = ddim_sample(
            m.latent_net,
            refs["sample_latent_noise"],
            make_schedule(d.beta_schedule, d.num_timesteps, 10),
            clip_denoised=d.clip_denoised,
            callback=steps.append,
        )
    _check_latent(
        "latent.latent_sample_T10_normalized", z_norm, refs["latent_sample_T10_normalized"]
    )
    _check_latent(
        "latent.latent_sample_T10_traj", _trajectory(steps, "x"), refs["latent_sample_T10_traj"]
    )
    z = m.sample_z(2, T=10, noise=refs["sample_latent_noise"])
    _check_latent("latent.latent_sample_T10_cond", z, refs["latent_sample_T10_cond"])
    _check(
        "latent.latent_train_x_start",
        m.normalize_z(m.encode(refs["x"])),
        refs["latent_train_x_start"],
        FORWARD_TOL,
    )

    image_steps: list[dict] = []
    image = m.render(refs["sample_xT"], z, T=10, callback=image_steps.append)
    _check(
        "latent.sample_T10_T10_traj_sample",
        _trajectory(image_steps, "x"),
        refs["sample_T10_T10_traj_sample"],
        DDIM_TOL,
    )
    _check("latent.sample_T10_T10 (explicit chain)", image, refs["sample_T10_T10"], DDIM_TOL)


def test_sample_draws_noise_like_official(latent) -> None:
    """`torch.manual_seed(2002); lit.sample(2, T=10, T_latent=10)`: image noise, then latent."""
    m, refs = latent
    generator = torch.Generator().manual_seed(2002)
    assert torch.equal(torch.randn(2, 3, 32, 32, generator=generator), refs["sample_xT"])
    assert torch.equal(torch.randn(2, 512, generator=generator), refs["sample_latent_noise"])
    image = m.sample(2, T=10, T_latent=10, generator=torch.Generator().manual_seed(2002))
    _check("latent.sample_T10_T10", image, refs["sample_T10_T10"], DDIM_TOL)


def test_latent_model_renders_without_official_latent_refusal(latent) -> None:
    m, refs = latent
    with pytest.raises(ValueError, match="has no latent DPM"):
        DiffAE.from_state(m.config.replace(latent_net=None), m.autoencoder.state_dict()).sample(1)


# --------------------------------------------------------------------------- tiny random model


# Last layer of each residual branch; the released code zero-initialises these.
_RESIDUAL_OUTPUTS = ("out_layers.3.weight", "proj_out.weight", "out.2.weight")


def _random_model(config, seed: int = 0) -> DiffAE:
    """Random weights; residual-branch outputs scaled by 0.2 (the release starts them at 0).

    With PyTorch's default init the tiny UNet's activations grow through the residual
    stream, and float32 reduction-order noise of batch-size-dependent kernels (~1e-7) grows
    to ~2e-5 over a 5-step inversion; the scaled network keeps it near 2e-6. The latent MLP
    gets the reference checkpoints' last-layer recipe; otherwise its DDIM runs off to
    |z| ~ 1e2, where float32 rounding alone is 1e-5.
    """
    torch.manual_seed(seed)
    autoencoder = AutoencoderNet(config.autoencoder)
    with torch.no_grad():
        for name, param in autoencoder.named_parameters():
            if name.endswith(_RESIDUAL_OUTPUTS):
                param.mul_(0.2)
    latent_net = z_mean = z_std = None
    if config.latent_net is not None:
        latent_net = LatentNet(config.latent_net)
        with torch.no_grad():  # as the reference generator: eps ~ z_t keeps the DDIM bounded
            last, width = latent_net.layers[-1].linear, config.latent_net.num_channels
            last.weight[:, -width:] = torch.eye(width) + 0.3 * last.weight[:, -width:]
            last.weight[:, :-width] *= 0.3
            last.bias *= 0.3
        z_mean = torch.randn(config.latent_net.num_channels) * 0.1
        z_std = torch.rand(config.latent_net.num_channels) + 0.5
    return DiffAE(config, autoencoder, latent_net=latent_net, z_mean=z_mean, z_std=z_std)


@pytest.fixture(scope="module")
def tiny_model(tiny_config) -> DiffAE:
    return _random_model(tiny_config(latent=True))


def test_same_inputs_and_generator_give_identical_outputs(tiny_model: DiffAE) -> None:
    m = tiny_model
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    z = m.encode(x)
    assert torch.equal(z, m.encode(x))
    x_T = m.encode_stochastic(x, z, T=5)
    assert torch.equal(x_T, m.encode_stochastic(x, z, T=5))
    assert torch.equal(m.render(x_T, z, T=5), m.render(x_T, z, T=5))
    first = m.sample(2, T=5, T_latent=5, generator=torch.Generator().manual_seed(7))
    second = m.sample(2, T=5, T_latent=5, generator=torch.Generator().manual_seed(7))
    other = m.sample(2, T=5, T_latent=5, generator=torch.Generator().manual_seed(8))
    assert torch.equal(first, second) and not torch.equal(first, other)
    z_a = m.sample_z(3, T=5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(z_a, m.sample_z(3, T=5, generator=torch.Generator().manual_seed(3)))


def test_batch_of_four_equals_four_batches_of_one(tiny_model: DiffAE) -> None:
    m, tol = tiny_model, 1e-5
    generator = torch.Generator().manual_seed(2)
    x = torch.rand(4, 3, 16, 16, generator=generator) * 2 - 1
    x_T = torch.randn(4, 3, 16, 16, generator=generator)
    noise = torch.randn(4, 16, generator=generator)

    def rows(fn) -> torch.Tensor:
        return torch.cat([fn(i) for i in range(4)])

    z = m.encode(x)
    _check("batch.encode", rows(lambda i: m.encode(x[i : i + 1])), z, tol)
    inv = m.encode_stochastic(x, z, T=5)
    _check(
        "batch.encode_stochastic",
        rows(lambda i: m.encode_stochastic(x[i : i + 1], z[i : i + 1], T=5)),
        inv,
        tol,
    )
    image = m.render(x_T, z, T=5)
    _check("batch.render", rows(lambda i: m.render(x_T[i : i + 1], z[i : i + 1], T=5)), image, tol)
    z_s = m.sample_z(4, T=5, noise=noise)
    _check("batch.sample_z", rows(lambda i: m.sample_z(1, T=5, noise=noise[i : i + 1])), z_s, tol)
    # sample() = render(image noise, sample_z(latent noise)), noise drawn in that order.
    sampled = m.sample(4, T=5, T_latent=5, generator=torch.Generator().manual_seed(9))
    generator = torch.Generator().manual_seed(9)
    x_T, noise = (
        torch.randn(4, 3, 16, 16, generator=generator),
        torch.randn(4, 16, generator=generator),
    )
    per_row = rows(
        lambda i: m.render(x_T[i : i + 1], m.sample_z(1, T=5, noise=noise[i : i + 1]), T=5)
    )
    _check("batch.sample", per_row, sampled, tol)


def test_no_cross_sample_leakage(tiny_model: DiffAE) -> None:
    """Changing one sample leaves the others bit-identical (same batch size, same kernels)."""
    m = tiny_model
    generator = torch.Generator().manual_seed(4)
    x = torch.rand(3, 3, 16, 16, generator=generator) * 2 - 1
    x_T = torch.randn(3, 3, 16, 16, generator=generator)
    other_x, other_x_T = x.clone(), x_T.clone()
    other_x[0], other_x_T[0] = -x[0], x_T[0] * 2
    z, other_z = m.encode(x), m.encode(other_x)
    assert torch.equal(z[1:], other_z[1:]) and not torch.equal(z[0], other_z[0])
    for a, b in (
        (m.encode_stochastic(x, z, T=3), m.encode_stochastic(other_x, other_z, T=3)),
        (m.render(x_T, z, T=3), m.render(other_x_T, other_z, T=3)),
    ):
        assert torch.equal(a[1:], b[1:]) and not torch.equal(a[0], b[0])
    noise = torch.randn(3, 16, generator=generator)
    other_noise = noise.clone()
    other_noise[0] += 1
    assert torch.equal(
        m.sample_z(3, T=3, noise=noise)[1:], m.sample_z(3, T=3, noise=other_noise)[1:]
    )


def test_inputs_are_validated(tiny_model: DiffAE) -> None:
    m = tiny_model
    with pytest.raises(ValueError, match=r"x must be \(B, 3, 16, 16\)"):
        m.encode(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match=r"z_sem must be \(B, 16\)"):
        m.render(torch.zeros(1, 3, 16, 16), torch.zeros(1, 512), T=2)
    with pytest.raises(ValueError, match="noise must be"):
        m.sample_z(2, noise=torch.zeros(3, 16))


# --------------------------------------------------------------------------- bundles


def test_save_and_load_pretrained_is_bit_exact(tiny_model: DiffAE, tmp_path: Path) -> None:
    m = tiny_model
    m.save_pretrained(tmp_path / "bundle", model_card="# tiny\n")
    loaded = DiffAE.from_pretrained(tmp_path / "bundle")
    assert loaded.config == m.config
    for ours, theirs in ((m.autoencoder, loaded.autoencoder), (m.latent_net, loaded.latent_net)):
        a, b = ours.state_dict(), theirs.state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(loaded.z_mean, m.z_mean) and torch.equal(loaded.z_std, m.z_std)
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    assert torch.equal(loaded.encode(x), m.encode(x))


def test_with_precision_equals_loading_in_that_precision(
    tiny_model: DiffAE, tmp_path: Path
) -> None:
    folder = tiny_model.save_pretrained(tmp_path / "bundle")
    loaded = DiffAE.from_pretrained(folder, precision="bfloat16")
    converted = DiffAE.from_pretrained(folder).with_precision("bfloat16")
    assert converted.precision == "bfloat16" and converted.memory_format == loaded.memory_format
    for a, b in (
        (converted.autoencoder, loaded.autoencoder),
        (converted.latent_net, loaded.latent_net),
    ):
        ours, theirs = a.state_dict(), b.state_dict()
        assert ours.keys() == theirs.keys()
        assert all(
            ours[k].dtype == theirs[k].dtype and torch.equal(ours[k], theirs[k]) for k in ours
        )
    assert tiny_model.precision == "float32"  # the original is untouched
    assert next(tiny_model.autoencoder.parameters()).dtype == torch.float32
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    assert torch.equal(converted.encode(x), loaded.encode(x))
    with pytest.raises(ValueError, match="from a float32 model"):
        loaded.with_precision("float16")


@pytest.fixture()
def bundle_dir(tiny_config, tmp_path: Path) -> Path:
    return _random_model(tiny_config()).save_pretrained(tmp_path / "bundle")


def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message, message
    return message


def test_folder_without_config_json(tmp_path: Path) -> None:
    (tmp_path / "weights").mkdir()
    with pytest.raises(CheckpointError, match="no config.json") as exc:
        DiffAE.from_pretrained(tmp_path / "weights")
    assert str(tmp_path / "weights") in _one_line(exc)


def test_file_instead_of_bundle_folder(tmp_path: Path) -> None:
    path = tmp_path / "model.ckpt"
    path.write_bytes(b"PK")
    with pytest.raises(CheckpointError, match="expected a bundle folder") as exc:
        DiffAE.from_pretrained(path)
    assert str(path) in _one_line(exc)


def test_malformed_config_json(bundle_dir: Path) -> None:
    (bundle_dir / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="malformed bundle config") as exc:
        DiffAE.from_pretrained(bundle_dir)
    assert str(bundle_dir / "config.json") in _one_line(exc)


def test_corrupt_safetensors(bundle_dir: Path) -> None:
    path = bundle_dir / "autoencoder.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="unreadable safetensors") as exc:
        DiffAE.from_pretrained(bundle_dir)
    assert str(path) in _one_line(exc)
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="unreadable safetensors"):
        DiffAE.from_pretrained(bundle_dir)


def test_shape_mismatch_lists_keys(bundle_dir: Path) -> None:
    path = bundle_dir / "autoencoder.safetensors"
    tensors = load_file(path)
    tensors["out.2.weight"] = torch.zeros(3, 8, 5, 5)
    save_file(tensors, path)
    with pytest.raises(CheckpointError, match="shape mismatch") as exc:
        DiffAE.from_pretrained(bundle_dir)
    message = _one_line(exc)
    assert message.startswith(f"{path} does not fit the configured model")
    assert "out.2.weight: file (3, 8, 5, 5) vs model (3, 8, 3, 3)" in message


def test_missing_and_unexpected_keys_are_named(bundle_dir: Path) -> None:
    path = bundle_dir / "autoencoder.safetensors"
    tensors = load_file(path)
    del tensors["encoder.out.3.bias"]
    tensors["extra.weight"] = torch.zeros(1)
    save_file(tensors, path)
    with pytest.raises(CheckpointError) as exc:
        DiffAE.from_pretrained(bundle_dir)
    message = _one_line(exc)
    assert message.startswith(f"{path} does not fit the configured model")
    assert "1 missing keys (e.g. encoder.out.3.bias)" in message
    assert "1 unexpected keys (e.g. extra.weight)" in message


def test_latent_file_mismatch_is_named(tiny_config, tmp_path: Path) -> None:
    bundle_dir = _random_model(tiny_config(latent=True)).save_pretrained(tmp_path / "bundle")
    path = bundle_dir / "latent_net.safetensors"
    tensors = load_file(path)
    tensors["layers.0.linear.weight"] = torch.zeros(32, 17)
    save_file(tensors, path)
    with pytest.raises(CheckpointError) as exc:
        DiffAE.from_pretrained(bundle_dir)
    message = _one_line(exc)
    assert message.startswith(f"{path} does not fit the configured model")
    assert "layers.0.linear.weight: file (32, 17) vs model (32, 16)" in message


def test_config_and_latent_file_disagree(bundle_dir: Path) -> None:
    meta = json.loads((bundle_dir / "config.json").read_text())
    meta["model"]["latent_net"] = {"num_channels": 16, "num_layers": 3, "skip_layers": [1]}
    (bundle_dir / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="disagree"):
        DiffAE.from_pretrained(bundle_dir)


def test_not_a_bundle_format(bundle_dir: Path) -> None:
    meta = json.loads((bundle_dir / "config.json").read_text())
    meta["format"] = "diffusers"
    (bundle_dir / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="not 'diffae-studio-bundle'"):
        DiffAE.from_pretrained(bundle_dir)
