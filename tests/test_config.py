"""Frozen configs: presets, the dict form a bundle's config.json holds, the sampler choice."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from diffae_app import DiffAE
from diffae_app.config import OFFICIAL_SAMPLER, PRESET_NAMES, ModelConfig, SamplerConfig, preset


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_every_preset_round_trips_through_its_dict(name: str) -> None:
    config = preset(name)
    assert ModelConfig.from_dict(config.to_dict()) == config


def test_released_presets_sample_like_the_official_code() -> None:
    for name in PRESET_NAMES:
        if name not in ("synthfaces64", "tiny32"):
            assert preset(name).sampler == OFFICIAL_SAMPLER, name
    assert OFFICIAL_SAMPLER.spacing == "uniform"
    assert OFFICIAL_SAMPLER.inversion_fixed_point_iterations == 0


def test_config_without_a_sampler_entry_gets_the_official_one() -> None:
    data = preset("synthfaces64").to_dict()
    del data["sampler"]  # bundles written before the sampler setting existed
    assert ModelConfig.from_dict(data).sampler == OFFICIAL_SAMPLER


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"spacing": "cosine"}, "spacing"),
        ({"power": 0}, "power"),
        ({"inversion_fixed_point_iterations": -1}, "fixed_point"),
    ],
)
def test_sampler_rejects_bad_values(changes: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SamplerConfig(**changes)
    data = preset("tiny32").to_dict()
    data["sampler"] = {**dataclasses.asdict(OFFICIAL_SAMPLER), **changes}
    with pytest.raises(ValueError, match=match):
        ModelConfig.from_dict(data)


def test_unknown_sampler_field_is_named() -> None:
    data = preset("tiny32").to_dict()
    data["sampler"] = {"spacing": "uniform", "stride": 3}
    with pytest.raises(ValueError, match="stride"):
        ModelConfig.from_dict(data)


def test_diffae_uses_the_config_sampler(tiny_config, single_thread) -> None:
    sampler = SamplerConfig(spacing="power", power=1.25, inversion_fixed_point_iterations=1)
    config = tiny_config().replace(sampler=sampler)
    torch.manual_seed(0)
    from diffae_app.models import AutoencoderNet

    model = DiffAE.from_state(config, AutoencoderNet(config.autoencoder).state_dict())
    assert model._schedule(10).timesteps[-1] == config.diffusion.num_timesteps - 1
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    z = model.encode(x)
    calls: list[int] = []
    model.encode_stochastic(x, z, T=5, callback=lambda step: calls.append(step["i"]))
    assert calls == list(range(4))  # refined inversion stops at alpha_bar[K-1]
    # The default (the config's one iteration) differs from an explicit 0.
    plain = model.encode_stochastic(x, z, T=5, fixed_point_iterations=0)
    refined = model.encode_stochastic(x, z, T=5)
    assert not torch.equal(plain, refined)
