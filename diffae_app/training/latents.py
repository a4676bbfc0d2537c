"""Stage 2 and 3: z_sem of a dataset (the latents file) and the latent DPM trained on it.

The latents file is one safetensors file:
    z_sem   (N, D) float32   EMA-encoder codes of every readable image, in dataset order
    z_mean  (D,)   float32   mean over the N codes
    z_std   (D,)   float32   standard deviation (torch's unbiased default, as the official
                             latent.pkl `conds_std`); the latent DPM and the classifiers
                             normalise z_sem by these two
and metadata: `ids` (JSON list of the N image ids: relative paths for an image folder, LMDB
keys for an LMDB), `source` (JSON: model, data, skipped items).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import LatentNetConfig, ModelConfig, preset
from ..diffusion import ddim_sample, eps_loss, make_schedule
from ..models import AutoencoderNet, LatentNet
from ..safetensors_io import read_safetensors
from .data import UnreadableItem

log = logging.getLogger(__name__)

LATENTS_FORMAT = "diffae-studio-latents"


class LatentsError(ValueError):
    """A latents file is missing, malformed or does not fit the model."""


@dataclass(frozen=True)
class LatentCodes:
    """The contents of a latents file (see module docstring)."""

    z_sem: torch.Tensor  # (N, D) float32
    ids: tuple[str, ...]  # (N,) image ids in dataset order
    z_mean: torch.Tensor  # (D,) float32
    z_std: torch.Tensor  # (D,) float32, unbiased
    source: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n, d = self.z_sem.shape
        if len(self.ids) != n or self.z_mean.shape != (d,) or self.z_std.shape != (d,):
            raise LatentsError(
                f"inconsistent latents: z_sem {tuple(self.z_sem.shape)}, {len(self.ids)} ids, "
                f"z_mean {tuple(self.z_mean.shape)}, z_std {tuple(self.z_std.shape)}"
            )

    @property
    def width(self) -> int:
        return self.z_sem.shape[1]

    def normalized(self) -> torch.Tensor:
        """(N, D) (z_sem - z_mean) / z_std: what the latent DPM and the classifiers see."""
        return (self.z_sem - self.z_mean) / self.z_std


def latent_stats(z_sem: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, unbiased std) over the batch axis, summed in float64, returned as float32."""
    if z_sem.shape[0] < 2:
        raise LatentsError(f"need at least 2 codes for a standard deviation, got {z_sem.shape[0]}")
    z = z_sem.double()
    return z.mean(0).float(), z.std(0).float()


def save_latents(path: str | os.PathLike, codes: LatentCodes) -> Path:
    """Write atomically (temporary file + rename): a killed run never leaves half a file."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(
        {
            "z_sem": codes.z_sem.float().contiguous(),
            "z_mean": codes.z_mean.float().contiguous(),
            "z_std": codes.z_std.float().contiguous(),
        },
        str(tmp),
        metadata={
            "format": LATENTS_FORMAT,
            "ids": json.dumps(list(codes.ids)),
            "source": json.dumps(codes.source, default=str),
        },
    )
    os.replace(tmp, path)
    return path


def load_latents(path: str | os.PathLike) -> LatentCodes:
    path = Path(path)
    if not path.is_file():
        raise LatentsError(f"latents file {path} does not exist; run train/encode_dataset.py")
    meta, tensors = read_safetensors(
        path,
        error=LatentsError,
        file_format=LATENTS_FORMAT,
        kind="latents file written by train/encode_dataset.py",
        required=("z_sem", "z_mean", "z_std"),
    )
    return LatentCodes(
        z_sem=tensors["z_sem"].float(),
        ids=tuple(json.loads(meta.get("ids", "[]"))),
        z_mean=tensors["z_mean"].float(),
        z_std=tensors["z_std"].float(),
        source=json.loads(meta.get("source") or "{}"),
    )


# --------------------------------------------------------------------------- encoding


class _Items(torch.utils.data.Dataset):
    """(index, image or None): an unreadable item becomes None instead of an exception."""

    def __init__(self, dataset: torch.utils.data.Dataset, indices: Sequence[int]) -> None:
        self.dataset, self.indices = dataset, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, str]:
        index = self.indices[i]
        try:
            return index, self.dataset[index], ""
        except UnreadableItem as exc:
            return index, None, str(exc)


def _collate(items: list) -> list:
    return items


@torch.no_grad()
def encode_items(
    encoder: nn.Module,
    dataset: torch.utils.data.Dataset,
    indices: Sequence[int],
    *,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    num_workers: int = 0,
    progress: bool = True,
) -> tuple[torch.Tensor, list[int], list[int]]:
    """z_sem of dataset[indices] in order: ((n_ok, D) float32, kept indices, skipped indices).

    Unreadable items are skipped (one warning each, counted) rather than replaced, so every
    code keeps the id of the image it came from. `dtype` (bfloat16/float16) runs the encoder
    under autocast.
    """
    from tqdm.auto import tqdm

    device = torch.device(device)
    loader = torch.utils.data.DataLoader(
        _Items(dataset, indices),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_collate,
    )
    codes: list[torch.Tensor] = []
    kept: list[int] = []
    skipped: list[int] = []
    bar = tqdm(total=len(indices), unit="img", disable=not progress, dynamic_ncols=True)
    for items in loader:
        good = [(i, x) for i, x, _ in items if x is not None]
        for i, x, why in items:
            if x is None:
                skipped.append(i)
                log.warning("skipping unreadable item (%d so far): %s", len(skipped), why)
        if good:
            x = torch.stack([x for _, x in good]).to(device)
            if dtype is not None and dtype != torch.float32:
                with torch.autocast(device.type, dtype=dtype):
                    z = encoder(x)
            else:
                z = encoder(x)
            codes.append(z.float().cpu())
            kept.extend(i for i, _ in good)
        bar.update(len(items))
    bar.close()
    width = codes[0].shape[1] if codes else 0
    return (torch.cat(codes) if codes else torch.zeros(0, width)), kept, skipped


# --------------------------------------------------------------------------- the latent DPM


def resolve_latent_config(
    base: ModelConfig,
    width: int,
    *,
    num_layers: int | None = None,
    num_hid_channels: int | None = None,
) -> ModelConfig:
    """`base` (the autoencoder's config) with a latent DPM over `width`-d z_sem.

    The MLP is the base config's own latent_net, else the one of the preset it is named
    after, else the released FFHQ one; `num_layers`/`num_hid_channels` override its depth and
    width (every hidden layer then takes a skip input, as in all released latent DPMs).
    """
    latent = base.latent_net
    if latent is None:
        try:
            latent = preset(base.name).latent_net
        except ValueError:
            latent = None
    if latent is None:
        latent = LatentNetConfig()
    changes: dict[str, Any] = {"num_channels": width}
    if num_layers is not None:
        changes["num_layers"] = num_layers
        changes["skip_layers"] = tuple(range(1, num_layers))
    if num_hid_channels is not None:
        changes["num_hid_channels"] = num_hid_channels
    return base.replace(latent_net=dataclasses.replace(latent, **changes))


class LatentStage:
    """The loop's `Stage` for the latent DPM: eps prediction on normalised z_sem.

    Official recipe (the released *_autoenc_latent models): z-normalisation, 'const0.008'
    betas over T = 1000, uniform t, L1 eps loss; AdamW (wd 0.01), batch 128, EMA 0.9999 are
    the script's defaults.
    """

    name = "latent_dpm"

    def __init__(
        self,
        config: ModelConfig,
        codes: LatentCodes,
        *,
        latents_path: str,
        autoencoder_bundle: str,
    ) -> None:
        if config.latent_net is None:
            raise LatentsError("the config has no latent_net to train")
        if config.latent_net.num_channels != codes.width:
            raise LatentsError(
                f"the latent net denoises {config.latent_net.num_channels}-d codes but "
                f"{latents_path} holds {codes.width}-d z_sem"
            )
        if len(codes.ids) < 2:
            raise LatentsError(f"{latents_path} holds {len(codes.ids)} codes; need at least 2")
        self.config = config
        self.codes = codes
        self.latents_path = latents_path
        self.autoencoder_bundle = autoencoder_bundle
        self.z_norm = codes.normalized()
        d = config.latent_diffusion
        self.schedule = make_schedule(d.beta_schedule, d.num_timesteps)
        self._renderer: AutoencoderNet | None = None

    def build(self) -> nn.Module:
        return LatentNet(self.config.latent_net)

    def num_items(self) -> int:
        return self.z_norm.shape[0]

    def describe(self) -> dict[str, Any]:
        # z_mean/z_std are part of the run's definition and let train/export.py rebuild the
        # bundle from any checkpoint even if the latents file has moved.
        return {
            "model": self.config.to_dict(),
            "latents": self.latents_path,
            "autoencoder_bundle": self.autoencoder_bundle,
            "data": self.codes.source.get("data", "?"),
            "num_codes": self.num_items(),
            "z_mean": self.codes.z_mean.tolist(),
            "z_std": self.codes.z_std.tolist(),
        }

    def loss(
        self, model: nn.Module, indices: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        device = next(model.parameters()).device
        z_0 = self.z_norm[indices]
        n = z_0.shape[0]
        t = torch.randint(0, self.config.latent_diffusion.num_timesteps, (n,), generator=generator)
        noise = torch.randn(z_0.shape, generator=generator)
        return eps_loss(
            model,
            self.schedule,
            z_0.to(device),
            t.to(device),
            noise.to(device),
            loss=self.config.latent_diffusion.loss,
        ).mean()

    def _autoencoder(self) -> AutoencoderNet | None:
        if self._renderer is None:
            from .export import ExportError, load_autoencoder_source

            try:
                config, tensors, _ = load_autoencoder_source(self.autoencoder_bundle)
            except ExportError as exc:
                log.warning("no sample grid: %s", exc)
                return None
            net = AutoencoderNet(config.autoencoder)
            net.load_state_dict(tensors)
            self._renderer = net.eval().requires_grad_(False)
        return self._renderer

    @torch.no_grad()
    def sample_z(self, ema: nn.Module, n: int, seed: int = 0) -> torch.Tensor:
        """n normalised codes from the EMA latent DPM (DDIM, default_latent_steps)."""
        d = self.config.latent_diffusion
        schedule = make_schedule(d.beta_schedule, d.num_timesteps, self.config.default_latent_steps)
        noise = torch.randn(n, self.codes.width, generator=torch.Generator().manual_seed(seed))
        device = next(ema.parameters()).device
        return ddim_sample(ema, noise.to(device), schedule, clip_denoised=d.clip_denoised).cpu()

    @torch.no_grad()
    def log_samples(self, ema: nn.Module, writer: Any, step: int) -> None:
        """Statistics of 256 sampled codes (normalised: mean ~0, std ~1) and 8 rendered faces."""
        z = self.sample_z(ema, 256)
        writer.add_scalar("eval/sample_mean_abs", z.mean(0).abs().mean().item(), step)
        writer.add_scalar("eval/sample_std", z.std(0).mean().item(), step)
        net = self._autoencoder()
        if net is None:
            return
        from torchvision.utils import make_grid

        z_sem = z[:8] * self.codes.z_std + self.codes.z_mean
        size = self.config.autoencoder.image_size
        x_T = torch.randn(8, 3, size, size, generator=torch.Generator().manual_seed(1))
        d = self.config.diffusion
        schedule = make_schedule(d.beta_schedule, d.num_timesteps, self.config.default_render_steps)
        images = ddim_sample(net, x_T, schedule, cond=z_sem, clip_denoised=d.clip_denoised)
        writer.add_image("samples/latent_dpm", make_grid(images.add(1).div(2).clamp(0, 1)), step)

    def export(self, ema: nn.Module, run_dir: Path, summary: dict[str, Any]) -> Path:
        from .export import export_latent_bundle, read_run_options

        return export_latent_bundle(
            run_dir / "bundle",
            autoencoder_bundle=self.autoencoder_bundle,
            config=self.config,
            latent_state=ema.state_dict(),
            z_mean=self.codes.z_mean,
            z_std=self.codes.z_std,
            data=self.describe()["data"],
            summary=summary,
            options=read_run_options(run_dir),
        )
