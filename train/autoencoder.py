r"""Stage 1: train the DiffAE autoencoder (semantic encoder + conditional UNet).

    accelerate launch train/autoencoder.py --data /path/to/aligned --preset ffhq256_autoenc \
        --run-dir runs/ffhq256 --steps 200000 --mixed-precision bf16
    python train/autoencoder.py --data synthfaces --preset synthfaces64 --run-dir runs/sf64 ...

Defaults are the official recipe (Adam 1e-4, batch 64, EMA 0.9999, grad clip 1, eps MSE,
uniform t, horizontal flips), except that the EMA decay warms up (see --ema-warmup).
`--data` takes an image folder, `lmdb:PATH` (the official ffhq256.lmdb layout) or
`synthfaces`. A run folder belongs to one run: `--resume latest` continues a killed run
exactly, `--overwrite` deletes it and starts over; without either, a folder that already
holds a run is refused.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from diffae_app.checkpoints import CheckpointError
from diffae_app.config import AutoencoderConfig, ModelConfig, preset
from diffae_app.diffusion import eps_loss, make_schedule, p2_weights, x0_weights
from diffae_app.metrics import psnr_db
from diffae_app.models import AutoencoderNet
from diffae_app.training.cli import (
    HelpFormatter,
    add_loop_arguments,
    loop_options,
    training_extras_error,
)
from diffae_app.training.data import BatchReader, DatasetError, open_dataset
from diffae_app.training.export import ExportError, export_autoencoder
from diffae_app.training.face_regions import face_region_weights
from diffae_app.training.loop import train
from diffae_app.training.state import TrainingStateError


class EncodeAndPredict(nn.Module):
    """DDP needs one forward: encode x_0 to z_sem, then predict eps of x_t under it."""

    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__()
        self.net = AutoencoderNet(config)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, x_0: torch.Tensor) -> torch.Tensor:
        return self.net(x_t, t, self.net.encoder(x_0))


class AutoencoderStage:
    name = "autoencoder"

    def __init__(
        self,
        config: ModelConfig,
        data: str,
        *,
        hflip: bool = True,
        lmdb_resolution: int | None = None,
        channels_last: bool = False,
        init_from: str | None = None,
        p2_gamma: float = 0.0,
        offset_noise: float = 0.0,
        x0_loss_cap: float = 0.0,
        face_region_weight: float = 0.0,
    ) -> None:
        self.config = config
        self.init_from = init_from
        self.data_spec = data
        self.hflip = hflip
        self.channels_last = channels_last
        self.dataset = open_dataset(
            data, config.autoencoder.image_size, lmdb_resolution=lmdb_resolution
        )
        self.reader = BatchReader(self.dataset)
        self.reader.read(0)  # fail at start, not mid-epoch, if the data is unusable
        self.schedule = make_schedule(
            config.diffusion.beta_schedule, config.diffusion.num_timesteps
        )
        self.p2_gamma = p2_gamma
        if offset_noise < 0:
            raise ValueError(f"--offset-noise must be >= 0, got {offset_noise}")
        self.offset_noise = offset_noise
        if x0_loss_cap < 0 or (x0_loss_cap and p2_gamma):
            raise ValueError(
                f"--x0-loss-cap must be >= 0 and cannot be combined with --p2-gamma (got "
                f"{x0_loss_cap} and {p2_gamma}): each sets the loss weight of every timestep"
            )
        self.x0_loss_cap = x0_loss_cap
        self.loss_weights = (
            x0_weights(self.schedule, x0_loss_cap)
            if x0_loss_cap
            else p2_weights(self.schedule, p2_gamma)
        )
        self.face_region_weight = face_region_weight
        self.pixel_weights = (
            face_region_weights(config.autoencoder.image_size, face_region_weight)
            if face_region_weight
            else None
        )
        self._fixed_batch: torch.Tensor | None = None

    def build(self) -> nn.Module:
        module = EncodeAndPredict(self.config.autoencoder)
        if self.init_from is not None:
            # Warm start (online and EMA) from an exported bundle, e.g. to continue the
            # bundled model's training on a machine that no longer has its run folder.
            from diffae_app.checkpoints import check_state_dict, read_bundle

            bundle = read_bundle(self.init_from)
            check_state_dict(
                module.net, bundle.autoencoder, source=f"{self.init_from}/autoencoder.safetensors"
            )
            module.net.load_state_dict({k: v.float() for k, v in bundle.autoencoder.items()})
        return module.to(memory_format=torch.channels_last) if self.channels_last else module

    def num_items(self) -> int:
        return len(self.dataset)

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.config.to_dict(),
            "data": self.data_spec,
            "init_from": self.init_from,
            "hflip": self.hflip,
            "channels_last": self.channels_last,
            "p2_gamma": self.p2_gamma,
            "offset_noise": self.offset_noise,
            "x0_loss_cap": self.x0_loss_cap,
            "face_region_weight": self.face_region_weight,
        }

    def training_noise(self, shape: torch.Size, generator: torch.Generator) -> torch.Tensor:
        """The eps of q(x_t | x_0): i.i.d. normal, plus `offset_noise` x a random colour offset
        per image and channel. With i.i.d. noise alone, a 64-px image's mean colour survives in
        x_t even at t = T (its noise averages out over 4096 pixels), so the decoder learns to
        read the colours off x_T instead of z_sem; the offset makes them unreadable there.
        """
        noise = torch.randn(shape, generator=generator)
        if self.offset_noise:
            offset = torch.randn(shape[0], shape[1], 1, 1, generator=generator)
            noise = noise + self.offset_noise * offset
        return noise

    def loss(
        self, model: nn.Module, indices: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        device = next(model.parameters()).device
        x_0 = self.reader.batch(indices)
        n = x_0.shape[0]
        if self.hflip:
            flip = torch.rand(n, generator=generator) < 0.5
            x_0 = torch.where(flip[:, None, None, None], x_0.flip(3), x_0)
        t = torch.randint(0, self.config.diffusion.num_timesteps, (n,), generator=generator)
        noise = self.training_noise(x_0.shape, generator)
        x_0, t, noise = x_0.to(device), t.to(device), noise.to(device)
        if self.loss_weights.device != device:  # moved once, at the first step on a GPU
            self.loss_weights = self.loss_weights.to(device)
            if self.pixel_weights is not None:
                self.pixel_weights = self.pixel_weights.to(device)
        if self.channels_last:
            x_0, noise = (
                x_0.contiguous(memory_format=torch.channels_last),
                noise.contiguous(memory_format=torch.channels_last),
            )

        def predict(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return model(x_t, t, x_0)

        per_sample = eps_loss(
            predict,
            self.schedule,
            x_0,
            t,
            noise,
            loss=self.config.diffusion.loss,
            pixel_weights=self.pixel_weights,
        )
        return (per_sample * self.loss_weights[t]).mean()

    @torch.no_grad()
    def log_samples(self, ema: nn.Module, writer: Any, step: int) -> dict[str, float]:
        """Reconstructions of 8 fixed images: input | z_sem-only render (T=20) | inversion+render."""
        from torchvision.utils import make_grid

        from diffae_app.diffusion import ddim_invert, ddim_sample

        if self._fixed_batch is None:
            self._fixed_batch = self.reader.batch(range(8))
        net = ema.net
        device = next(net.parameters()).device
        x = self._fixed_batch.to(device)
        z = net.encoder(x)
        sched = make_schedule(
            self.config.diffusion.beta_schedule, self.config.diffusion.num_timesteps, 20
        )
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0)).to(device)
        z_only = ddim_sample(net, noise, sched, cond=z)
        x_T = ddim_invert(net, x, sched, cond=z)
        recon = ddim_sample(net, x_T, sched, cond=z)
        grid = make_grid(torch.cat([x, z_only, recon]).add(1).div(2).clamp(0, 1), nrow=8)
        writer.add_image("samples/input_zsem_inverted", grid, step)
        # One PSNR over the 8 images pooled (not a mean of per-image values), on [0, 1] pixels.
        psnr = psnr_db(recon.add(1).div(2).reshape(1, -1), x.add(1).div(2).reshape(1, -1)).item()
        writer.add_scalar("eval/recon_psnr_T20", psnr, step)
        return {"recon_psnr_T20": round(psnr, 2)}

    def data_report(self) -> dict[str, int]:
        return {"skipped_unreadable": len(self.reader.skipped)}

    def export(self, ema: nn.Module, run_dir: Path, summary: dict[str, Any]) -> Path:
        return export_autoencoder(
            ema.net.state_dict(),
            self.config,
            run_dir / "bundle",
            data=self.data_spec,
            summary=summary,
        )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument(
        "--data", required=True, help="image folder, lmdb:PATH, or synthfaces[:START[:COUNT]]"
    )
    p.add_argument(
        "--lmdb-resolution", type=int, default=None, help="resolution the LMDB was written at"
    )
    p.add_argument(
        "--preset",
        default=None,
        help="architecture preset, e.g. ffhq256_autoenc (256 px, the default), synthfaces64 "
        "(64 px), tiny32 (32 px, for trying things out)",
    )
    p.add_argument(
        "--config", default=None, help="a config.json (bundle format) instead of --preset"
    )
    add_loop_arguments(p, batch_size=64, optimizer="Adam")
    p.add_argument("--no-hflip", action="store_true", help="no random horizontal flips")
    # channels_last measured 2x slower for this model's bf16 training on a 2-core CPU (benchmarks/).
    p.add_argument("--channels-last", action="store_true", help="channels-last memory format")
    p.add_argument("--init-from", default=None, help="start from a bundle's autoencoder weights")
    p.add_argument(
        "--p2-gamma",
        type=float,
        default=0.0,
        help="P2 loss weighting 1/(1+SNR)^gamma; 0 is the official uniform weighting",
    )
    p.add_argument(
        "--offset-noise",
        type=float,
        default=0.0,
        help="std of a per-image, per-channel constant added to the training noise; 0: official",
    )
    p.add_argument(
        "--x0-loss-cap",
        type=float,
        default=0.0,
        help="weight the eps loss by min(1/SNR, CAP), i.e. an x0 loss where every noise level "
        "counts the same (noisy steps then make z_sem carry small features); 0: off",
    )
    p.add_argument(
        "--face-region-weight",
        type=float,
        default=0.0,
        help="weigh each pixel's loss by 1 + W x (bumps on the eyes, mouth and cheeks of an "
        "FFHQ-aligned face), mean 1, so z_sem must carry the small features; 0: off",
    )
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def model_config(args: argparse.Namespace) -> ModelConfig:
    if args.config:
        meta = json.loads(Path(args.config).read_text())
        return ModelConfig.from_dict(meta.get("model", meta))
    return preset(args.preset or "ffhq256_autoenc")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if missing := training_extras_error():
        print(f"error: {missing}", file=sys.stderr)
        return 2
    try:
        config = model_config(args)
        stage = AutoencoderStage(
            config,
            args.data,
            hflip=not args.no_hflip,
            lmdb_resolution=args.lmdb_resolution,
            channels_last=args.channels_last,
            init_from=args.init_from,
            p2_gamma=args.p2_gamma,
            offset_noise=args.offset_noise,
            x0_loss_cap=args.x0_loss_cap,
            face_region_weight=args.face_region_weight,
        )
        options = loop_options(args, optimizer="adam")
        summary = train(stage, options)
    except (CheckpointError, DatasetError, ExportError, TrainingStateError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if summary.get("recon_psnr_T20") is not None:
        print(
            "reconstruction of 8 training images (EMA weights, 20 DDIM steps): "
            f"{summary['recon_psnr_T20']:.1f} dB"
        )
    if summary.get("export"):
        print(f"exported {summary['export']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
