"""Fast inference paths: precomputed conditioning is exact, reduced-precision weights are
stored once and render close to float32.

Random tiny models: these check the arithmetic of each path, not a trained model's quality
(benchmarks/fidelity_study.py measures that on the bundled model).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from diffae_app import DiffAE
from diffae_app.diffusion import ddim_invert, ddim_sample, make_schedule
from diffae_app.models import AutoencoderNet
from diffae_app.models.blocks import normalization

pytestmark = pytest.mark.usefixtures("single_thread")


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = (a - b).pow(2).mean().item()
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


@pytest.fixture(scope="module")
def tiny(tiny_config) -> tuple[AutoencoderNet, dict[str, torch.Tensor]]:
    config = tiny_config(image_size=32, attention_resolutions=(16,))
    torch.manual_seed(0)
    net = AutoencoderNet(config.autoencoder).eval().requires_grad_(False)
    # Non-trivial norm and conditioning weights, so a wrong dtype or a skipped term shows.
    with torch.no_grad():
        for name, param in net.named_parameters():
            if "emb_layers" in name or name.endswith(("norm.weight", "0.weight")):
                param.add_(0.1 * torch.randn_like(param))
    return net, {"config": config}


def _inputs(config, batch: int = 2, seed: int = 1) -> dict[str, torch.Tensor]:
    size = config.autoencoder.image_size
    gen = torch.Generator().manual_seed(seed)
    return {
        "x": torch.rand(batch, 3, size, size, generator=gen) * 2 - 1,
        "x_T": torch.randn(batch, 3, size, size, generator=gen),
        "z": torch.randn(batch, config.autoencoder.z_sem_channels, generator=gen),
        "t": torch.tensor([17, 503] * (batch // 2) + [503] * (batch % 2)),
    }


def _model(tiny, precision: str) -> DiffAE:
    net, extra = tiny
    return DiffAE.from_state(extra["config"], net.state_dict(), precision=precision)


# --------------------------------------------------------------------------- conditioning


def test_prepared_conditioning_is_bit_exact(tiny) -> None:
    net, extra = tiny
    data = _inputs(extra["config"])
    with torch.inference_mode():
        plain = net(data["x"], data["t"], data["z"])
        prepared = net(
            data["x"],
            time_projections=net.prepare_time(data["t"]),
            z_sem_projections=net.prepare_z_sem(data["z"]),
        )
        mixed = net(data["x"], data["t"], z_sem_projections=net.prepare_z_sem(data["z"]))
        without_z = net(data["x"], data["t"], None)
        without_z_prepared = net(data["x"], data["t"], z_sem_projections=net.prepare_z_sem(None))
    assert torch.equal(plain, prepared)
    assert torch.equal(plain, mixed)
    assert torch.equal(without_z, without_z_prepared)
    assert not torch.equal(plain, without_z)


def test_one_time_row_broadcasts_over_the_batch(tiny) -> None:
    net, extra = tiny
    data = _inputs(extra["config"], batch=3)
    t = torch.full((3,), 250)
    with torch.inference_mode():
        plain = net(data["x"], t, data["z"])
        all_steps = net.prepare_time(torch.tensor([0, 250, 999]))
        row = {block: p[1:2] for block, p in all_steps.items()}
        prepared = net(
            data["x"], time_projections=row, z_sem_projections=net.prepare_z_sem(data["z"])
        )
    assert next(iter(row.values())).shape[0] == 1
    torch.testing.assert_close(prepared, plain, rtol=0, atol=1e-5)


def test_forward_needs_t_or_its_projections(tiny) -> None:
    net, extra = tiny
    data = _inputs(extra["config"])
    with pytest.raises(ValueError, match="needs t or time_projections"):
        net(data["x"], None, data["z"])


def test_cached_render_and_inversion_match_the_plain_float32_path(tiny) -> None:
    """The facade's ddim_predictor against the per-call noise_predictor (the official path)."""
    model = _model(tiny, "float32")
    data = _inputs(model.config)
    schedule = make_schedule("linear", 1000, 10)
    with torch.inference_mode():
        plain_x0 = ddim_sample(model.noise_predictor(), data["x_T"], schedule, cond=data["z"])
        plain_xT = ddim_invert(model.noise_predictor(), data["x"], schedule, cond=data["z"])
        image = model.render(data["x_T"], data["z"], T=10)
        x_T = model.encode_stochastic(data["x"], data["z"], T=10)
    torch.testing.assert_close(image, ((plain_x0 + 1) / 2).clamp(0, 1), rtol=0, atol=1e-5)
    torch.testing.assert_close(x_T, plain_xT, rtol=0, atol=1e-4)


def test_ddim_predictor_rejects_timesteps_outside_its_schedule(tiny) -> None:
    model = _model(tiny, "float32")
    data = _inputs(model.config)
    predict = model.ddim_predictor(data["z"], make_schedule("linear", 1000, 10))
    with torch.inference_mode(), pytest.raises(KeyError):
        predict(data["x_T"], torch.full((2,), 5))


# --------------------------------------------------------------------------- precision


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_group_norm_of_bf16_normalises_in_float32(layout) -> None:
    norm = normalization(64)
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    gen = torch.Generator().manual_seed(0)
    x = (torch.randn(2, 64, 8, 8, generator=gen) * 3 + 1).to(torch.bfloat16)
    x = x.contiguous(memory_format=layout)
    expected = F.group_norm(x.float(), 32, norm.weight, norm.bias, norm.eps).to(torch.bfloat16)
    out = norm(x)
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, expected)


def _float32_parameter_names(module: nn.Module) -> set[str]:
    """GroupNorm parameters and the UNet's output layer (eps), kept float32 by design."""
    norms = {
        f"{name}.{p}"
        for name, layer in module.named_modules()
        if isinstance(layer, nn.GroupNorm)
        for p, _ in layer.named_parameters(recurse=False)
    }
    return norms | {name for name, _ in module.named_parameters() if name.startswith("out.")}


@pytest.mark.parametrize(
    "precision,dtype", [("bfloat16", torch.bfloat16), ("float16", torch.float16)]
)
def test_reduced_precision_stores_one_copy_with_float32_norms(tiny, precision, dtype) -> None:
    net, _ = tiny
    model = _model(tiny, precision)
    norms = _float32_parameter_names(model.autoencoder)
    assert "out.2.weight" in norms and "encoder.out.3.weight" not in norms
    expected_bytes = 0
    for name, param in model.autoencoder.named_parameters():
        want = torch.float32 if name in norms else dtype
        assert param.dtype == want, name
        expected_bytes += param.numel() * want.itemsize
    # Every parameter owns its storage: no float32 original kept alive behind a view.
    stored = sum(p.untyped_storage().nbytes() for p in model.autoencoder.parameters())
    assert stored == expected_bytes
    assert model.autoencoder.dtype == dtype


def test_wrapping_a_float32_module_converts_it_in_place(tiny) -> None:
    net, extra = tiny
    copy = AutoencoderNet(extra["config"].autoencoder)
    copy.load_state_dict(net.state_dict())
    model = DiffAE(extra["config"], copy, precision="bfloat16")
    assert model.autoencoder is copy
    assert copy.input_blocks[0][0].weight.dtype == torch.bfloat16
    assert copy.out[0].weight.dtype == copy.out[2].weight.dtype == torch.float32
    assert copy.encoder.out[3].weight.dtype == torch.bfloat16


@pytest.mark.parametrize("precision,min_psnr", [("bfloat16", 35.0), ("float16", 45.0)])
def test_reduced_precision_renders_close_to_float32(tiny, precision, min_psnr) -> None:
    reference, fast = _model(tiny, "float32"), _model(tiny, precision)
    data = _inputs(reference.config)
    z_fast, z_ref = fast.encode(data["x"]), reference.encode(data["x"])
    assert z_fast.dtype == torch.float32
    assert torch.nn.functional.cosine_similarity(z_fast, z_ref).min() > 0.999
    image = fast.render(data["x_T"], data["z"], T=10)
    assert image.dtype == torch.float32
    quality = _psnr(image, reference.render(data["x_T"], data["z"], T=10))
    print(f"{precision} render vs float32: {quality:.1f} dB")
    assert quality >= min_psnr


def test_reduced_precision_network_takes_float32_inputs(tiny) -> None:
    """Callers keep passing float32 x_t and z_sem; the network follows its weights' dtype."""
    model = _model(tiny, "bfloat16")
    data = _inputs(model.config)
    with torch.inference_mode():
        eps = model.noise_predictor()(data["x"], data["t"], data["z"])
        plain = model.autoencoder(data["x"], data["t"], data["z"])
    assert eps.dtype == torch.float32 and torch.equal(eps, plain)
