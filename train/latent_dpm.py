r"""Stage 3: train the latent DPM (an MLP denoiser of normalised z_sem) and export the bundle.

    python train/latent_dpm.py --latents runs/sf64/latents.safetensors \
        --autoencoder runs/sf64/autoencoder/bundle --run-dir runs/sf64/latent --steps 6000
    accelerate launch train/latent_dpm.py ...   (DDP, mixed precision, accumulation)

Defaults are the released latent DPMs' recipe: AdamW lr 1e-4 with weight decay 0.01, batch
128, EMA 0.9999, grad clip 1, z_sem normalised by the latents file's mean/std, 'const0.008'
betas over T = 1000, uniform t, L1 eps loss. The MLP is the autoencoder config's (or its
preset's) latent_net; `--latent-layers/--latent-hidden` change depth and width.
The exported bundle (RUN_DIR/bundle) is the autoencoder bundle's files plus
latent_net.safetensors with z_mean/z_std, so it samples random faces.
The EMA decay warms up by default (`--no-ema-warmup`: the released recipe). A run folder
belongs to one run: `--resume latest` continues a killed run exactly, `--overwrite` deletes it
and starts over; without either, a folder that already holds a run is refused.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from diffae_app.checkpoints import CheckpointError, read_bundle_config
from diffae_app.config import ModelConfig
from diffae_app.training.cli import (
    HelpFormatter,
    add_loop_arguments,
    loop_options,
    training_extras_error,
)
from diffae_app.training.data import DatasetError
from diffae_app.training.export import ExportError, load_autoencoder_source
from diffae_app.training.latents import (
    LatentsError,
    LatentStage,
    load_latents,
    resolve_latent_config,
)
from diffae_app.training.loop import train
from diffae_app.training.state import TrainingStateError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--latents", required=True, help="latents file from train/encode_dataset.py")
    p.add_argument(
        "--autoencoder", required=True, help="the autoencoder bundle the latents were encoded with"
    )
    add_loop_arguments(p, batch_size=128, optimizer="AdamW")
    p.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay")
    p.add_argument("--latent-layers", type=int, default=None, help="MLP depth (default: preset's)")
    p.add_argument("--latent-hidden", type=int, default=None, help="MLP width (default: preset's)")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def base_config(autoencoder: str) -> ModelConfig:
    """The autoencoder's config as saved (a bundle's may already name its latent_net)."""
    if (Path(autoencoder) / "config.json").is_file():
        return read_bundle_config(autoencoder)
    return load_autoencoder_source(autoencoder)[0]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if missing := training_extras_error():
        print(f"error: {missing}", file=sys.stderr)
        return 2
    try:
        codes = load_latents(args.latents)
        base = base_config(args.autoencoder)
        if codes.width != base.autoencoder.z_sem_channels:
            raise LatentsError(
                f"{args.latents} holds {codes.width}-d codes but {args.autoencoder} makes "
                f"{base.autoencoder.z_sem_channels}-d z_sem; encode with this autoencoder"
            )
        config = resolve_latent_config(
            base, codes.width, num_layers=args.latent_layers, num_hid_channels=args.latent_hidden
        )
        # Absolute, so train/export.py finds the bundle from any working directory.
        stage = LatentStage(
            config,
            codes,
            latents_path=str(Path(args.latents).resolve()),
            autoencoder_bundle=str(Path(args.autoencoder).resolve()),
        )
        options = loop_options(args, optimizer="adamw", weight_decay=args.weight_decay)
        summary = train(stage, options)
    except (
        CheckpointError,
        DatasetError,
        ExportError,
        LatentsError,
        TrainingStateError,
        ValueError,
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if summary.get("export"):
        print(f"exported {summary['export']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
