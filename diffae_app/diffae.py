"""`DiffAE`: the loaded model, with the inference calls DiffAE users know from LitModel.

    m = DiffAE.from_official("checkpoints/ffhq256_autoenc_latent/last.ckpt")
    m = DiffAE.from_pretrained("assets/models/synthfaces64")
    z = m.encode(x)                        # (B,3,H,W) in [-1,1] -> (B,512)
    x_T = m.encode_stochastic(x, z, T=250)  # DDIM inversion
    img = m.render(x_T, z, T=20)           # -> (B,3,H,W) in [0,1]

Only EMA weights are kept (one copy, in the chosen dtype). Every call runs under
`torch.inference_mode`; randomness comes only from the `generator`/`noise` arguments.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import torch

from .checkpoints import (
    CheckpointError,
    check_state_dict,
    load_official,
    read_bundle,
    resolve_bundle_path,
    save_bundle,
)
from .classifier import AttributeClassifier
from .config import ModelConfig
from .diffusion import ddim_invert, ddim_sample, make_schedule
from .diffusion.ddim import StepCallback
from .models import AutoencoderNet, LatentNet

PRECISIONS = ("float32", "bfloat16", "float16")


class DiffAE:
    """A DiffAE autoencoder (+ optional latent DPM and attribute classifiers) ready to infer."""

    def __init__(
        self,
        config: ModelConfig,
        autoencoder: AutoencoderNet,
        *,
        latent_net: LatentNet | None = None,
        z_mean: torch.Tensor | None = None,
        z_std: torch.Tensor | None = None,
        classifiers: Mapping[str, AttributeClassifier] | None = None,
        device: str | torch.device = "cpu",
        precision: str = "float32",
        source: str = "",
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if (latent_net is None) != (z_mean is None):
            raise ValueError("a latent DPM needs z_mean/z_std, and they need a latent DPM")
        self.config = config
        self.device = torch.device(device)
        self.precision = precision
        self.source = source
        self.autoencoder = autoencoder.eval().requires_grad_(False).to(self.device)
        self.latent_net = (
            latent_net.eval().requires_grad_(False).to(self.device) if latent_net else None
        )
        self.z_mean = z_mean.reshape(-1).float().to(self.device) if z_mean is not None else None
        self.z_std = z_std.reshape(-1).float().to(self.device) if z_std is not None else None
        self.classifiers = dict(classifiers or {})

    # ------------------------------------------------------------------ loading and saving

    @classmethod
    def from_state(
        cls,
        config: ModelConfig,
        autoencoder_state: Mapping[str, torch.Tensor],
        *,
        latent_state: Mapping[str, torch.Tensor] | None = None,
        z_mean: torch.Tensor | None = None,
        z_std: torch.Tensor | None = None,
        classifiers: Mapping[str, AttributeClassifier] | None = None,
        source: str = "weights",
        device: str | torch.device = "cpu",
        precision: str = "float32",
        autoencoder_source: str | None = None,
        latent_source: str | None = None,
    ) -> DiffAE:
        """Build the networks from `config` and load the given tensors (strict, checked).

        `autoencoder_source` / `latent_source` name the files the tensors came from in error
        messages (default: `source` with the part in brackets).
        """
        with torch.device("meta"):
            autoencoder = AutoencoderNet(config.autoencoder)
            latent = LatentNet(config.latent_net) if config.latent_net is not None else None
        check_state_dict(
            autoencoder, autoencoder_state, source=autoencoder_source or f"{source} (autoencoder)"
        )
        autoencoder.load_state_dict(_as_float32(autoencoder_state), assign=True)
        if latent is not None:
            if latent_state is None:
                raise CheckpointError(f"{source}: config has a latent DPM but no weights for it")
            check_state_dict(latent, latent_state, source=latent_source or f"{source} (latent DPM)")
            latent.load_state_dict(_as_float32(latent_state), assign=True)
        return cls(
            config,
            autoencoder,
            latent_net=latent,
            z_mean=z_mean,
            z_std=z_std,
            classifiers=classifiers,
            device=device,
            precision=precision,
            source=source,
        )

    @classmethod
    def from_official(
        cls,
        path: str | os.PathLike,
        *,
        config: ModelConfig | str | None = None,
        classifier: str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
        precision: str = "float32",
    ) -> DiffAE:
        """Load an official Lightning `last.ckpt` (EMA weights), optionally with its classifier."""
        weights = load_official(path, config=config)
        classifiers = {}
        if classifier is not None:
            from .checkpoints import load_official_classifier

            classifiers["celebahq"] = load_official_classifier(classifier)
        return cls.from_state(
            weights.config,
            weights.autoencoder,
            latent_state=weights.latent_net,
            z_mean=weights.z_mean,
            z_std=weights.z_std,
            classifiers=classifiers,
            source=str(path),
            device=device,
            precision=precision,
        )

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike,
        *,
        revision: str | None = None,
        device: str | torch.device = "cpu",
        precision: str = "float32",
    ) -> DiffAE:
        """Load one of our bundles from a folder or a Hugging Face Hub repo id."""
        bundle = read_bundle(resolve_bundle_path(name_or_path, revision=revision))
        return cls.from_state(
            bundle.config,
            bundle.autoencoder,
            latent_state=bundle.latent_net,
            z_mean=bundle.z_mean,
            z_std=bundle.z_std,
            classifiers=bundle.classifiers,
            source=str(bundle.path),
            device=device,
            precision=precision,
            autoencoder_source=str(bundle.path / "autoencoder.safetensors"),
            latent_source=str(bundle.path / "latent_net.safetensors"),
        )

    def save_pretrained(
        self, directory: str | os.PathLike, *, model_card: str | None = None
    ) -> Path:
        return save_bundle(
            directory,
            self.config,
            self.autoencoder.state_dict(),
            latent_net=self.latent_net.state_dict() if self.latent_net is not None else None,
            z_mean=self.z_mean,
            z_std=self.z_std,
            classifiers=self.classifiers,
            model_card=model_card,
        )

    # ------------------------------------------------------------------ inference

    @property
    def image_size(self) -> int:
        return self.config.autoencoder.image_size

    @property
    def has_latent_dpm(self) -> bool:
        return self.latent_net is not None

    def _autocast(self) -> AbstractContextManager:
        if self.precision == "float32":
            return nullcontext()
        dtype = torch.bfloat16 if self.precision == "bfloat16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def noise_predictor(self) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
        """The decoder as `(x_t, t, z_sem) -> eps`, float32 out, in this model's precision."""

        def predict(x_t: torch.Tensor, t: torch.Tensor, z_sem: torch.Tensor) -> torch.Tensor:
            with self._autocast():
                return self.autoencoder(x_t, t, z_sem).float()

        return predict

    def _check_images(self, x: torch.Tensor, name: str = "x") -> torch.Tensor:
        size = self.image_size
        if x.dim() != 4 or x.shape[1] != 3 or x.shape[2] != size or x.shape[3] != size:
            raise ValueError(f"{name} must be (B, 3, {size}, {size}), got {tuple(x.shape)}")
        return x.to(self.device, torch.float32)

    def _check_z(self, z_sem: torch.Tensor) -> torch.Tensor:
        width = self.config.autoencoder.z_sem_channels
        if z_sem.dim() != 2 or z_sem.shape[1] != width:
            raise ValueError(f"z_sem must be (B, {width}), got {tuple(z_sem.shape)}")
        return z_sem.to(self.device, torch.float32)

    @torch.inference_mode()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Semantic code: x (B, 3, S, S) in [-1, 1] -> z_sem (B, 512) float32."""
        x = self._check_images(x)
        with self._autocast():
            return self.autoencoder.encoder(x).float()

    def _schedule(self, num_steps: int):
        d = self.config.diffusion
        return make_schedule(d.beta_schedule, d.num_timesteps, num_steps)

    @torch.inference_mode()
    def encode_stochastic(
        self,
        x: torch.Tensor,
        z_sem: torch.Tensor,
        T: int = 250,
        *,
        callback: StepCallback | None = None,
    ) -> torch.Tensor:
        """Stochastic code x_T by T-step DDIM inversion of x (B, 3, S, S) in [-1, 1]."""
        x, z_sem = self._check_images(x), self._check_z(z_sem)
        return ddim_invert(
            self.noise_predictor(),
            x,
            self._schedule(T),
            cond=z_sem,
            clip_denoised=self.config.diffusion.clip_denoised,
            callback=callback,
        )

    @torch.inference_mode()
    def render(
        self,
        x_T: torch.Tensor,
        z_sem: torch.Tensor,
        T: int | None = None,
        *,
        callback: StepCallback | None = None,
    ) -> torch.Tensor:
        """Decode (x_T, z_sem) with T-step DDIM -> images (B, 3, S, S) in [0, 1]."""
        x_T, z_sem = self._check_images(x_T, "x_T"), self._check_z(z_sem)
        x_0 = ddim_sample(
            self.noise_predictor(),
            x_T,
            self._schedule(T or self.config.default_render_steps),
            cond=z_sem,
            clip_denoised=self.config.diffusion.clip_denoised,
            callback=callback,
        )
        return ((x_0 + 1) / 2).clamp(0, 1)

    def _require_latent(self) -> LatentNet:
        if self.latent_net is None:
            raise ValueError(
                f"{self.config.name} has no latent DPM, so it cannot sample random faces; "
                "load an *_autoenc_latent checkpoint or a bundle with latent_net.safetensors"
            )
        return self.latent_net

    def normalize_z(self, z_sem: torch.Tensor) -> torch.Tensor:
        self._require_latent()
        return (z_sem - self.z_mean) / self.z_std

    def denormalize_z(self, z_norm: torch.Tensor) -> torch.Tensor:
        self._require_latent()
        return z_norm * self.z_std + self.z_mean

    @torch.inference_mode()
    def sample_z(
        self,
        n: int,
        T: int | None = None,
        *,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """n semantic codes from the latent DPM, de-normalised, (n, 512) float32."""
        latent_net = self._require_latent()
        width = self.config.latent_net.num_channels
        if noise is None:
            noise = torch.randn(
                n, width, generator=generator, device=generator.device if generator else "cpu"
            )
        elif tuple(noise.shape) != (n, width):
            raise ValueError(f"noise must be ({n}, {width}), got {tuple(noise.shape)}")
        d = self.config.latent_diffusion
        schedule = make_schedule(
            d.beta_schedule, d.num_timesteps, T or self.config.default_latent_steps
        )
        z = ddim_sample(
            lambda z_t, t: latent_net(z_t, t).float(),
            noise.to(self.device, torch.float32),
            schedule,
            clip_denoised=d.clip_denoised,
        )
        return self.denormalize_z(z)

    @torch.inference_mode()
    def sample(
        self,
        n: int,
        T: int | None = None,
        T_latent: int | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """n random images in [0, 1]. Draws the image noise first, then the latent noise."""
        self._require_latent()
        size = self.image_size
        device = generator.device if generator is not None else "cpu"
        x_T = torch.randn(n, 3, size, size, generator=generator, device=device)
        latent_noise = torch.randn(
            n, self.config.latent_net.num_channels, generator=generator, device=device
        )
        z = self.sample_z(n, T_latent, noise=latent_noise)
        return self.render(x_T, z, T)


def _as_float32(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # Clone so memory-mapped checkpoint storage is not kept alive by the model.
    return {k: v.detach().to(torch.float32).clone() for k, v in tensors.items()}
