"""Shared pytest fixtures. Keep this file small and generic; module-specific helpers live in
the test module that uses them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from diffae_app.config import AutoencoderConfig, LatentNetConfig, ModelConfig

# --------------------------------------------------------------------------- core model
# `official_dir`: facts and reference outputs of the official DiffAE release, read in place
# from ../shared/official (relative to the repo root); never copied into the repo.
# `tiny_config`: a factory of small random-weight configs for fast CPU tests.
# `single_thread`: run a test with one torch thread (tiny models are faster that way, and
# far faster on a busy machine); use via `pytestmark = pytest.mark.usefixtures(...)`.

OFFICIAL_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "official"


@pytest.fixture(scope="session")
def official_dir() -> Path:
    """../shared/official: CHECKPOINT_FORMAT.md, manifests/, reference/ (tiny checkpoints)."""
    if not (OFFICIAL_DIR / "reference").is_dir():
        pytest.skip(f"official reference files not found at {OFFICIAL_DIR} (../shared absent)")
    return OFFICIAL_DIR


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
