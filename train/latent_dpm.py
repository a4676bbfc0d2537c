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
from diffae_app.training.cli import HelpFormatter, training_extras_error
from diffae_app.training.data import DatasetError
from diffae_app.training.export import ExportError, load_autoencoder_source
from diffae_app.training.latents import (
    LatentsError,
    LatentStage,
    load_latents,
    resolve_latent_config,
)
from diffae_app.training.loop import LoopOptions, train
from diffae_app.training.state import TrainingStateError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--latents", required=True, help="latents file from train/encode_dataset.py")
    p.add_argument(
        "--autoencoder", required=True, help="the autoencoder bundle the latents were encoded with"
    )
    p.add_argument("--run-dir", required=True, help="folder of this run (one run per folder)")
    p.add_argument("--steps", type=int, required=True, help="optimiser steps in total")
    p.add_argument("--batch-size", type=int, default=128, help="global batch size")
    p.add_argument("--lr", type=float, default=1e-4, help="peak learning rate (AdamW)")
    p.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay")
    p.add_argument("--warmup-steps", type=int, default=0, help="linear learning-rate warm-up")
    p.add_argument(
        "--lr-decay",
        choices=["constant", "cosine"],
        default="constant",
        help="cosine: down to 10%% of --lr at the last step",
    )
    p.add_argument("--ema-decay", type=float, default=0.9999, help="EMA decay (released 0.9999)")
    p.add_argument(
        "--ema-warmup",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="ramp the EMA decay up as min(decay, (1+s)/(10+s)); --no-ema-warmup is the "
        "released recipe, whose EMA stays near the random start for ~10,000 steps",
    )
    p.add_argument("--grad-clip", type=float, default=1.0, help="max gradient norm (0: off)")
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches per step")
    p.add_argument(
        "--mixed-precision", choices=["no", "bf16", "fp16"], default="no", help="autocast dtype"
    )
    p.add_argument("--latent-layers", type=int, default=None, help="MLP depth (default: preset's)")
    p.add_argument("--latent-hidden", type=int, default=None, help="MLP width (default: preset's)")
    p.add_argument("--seed", type=int, default=0, help="seed of weights, data order and noise")
    p.add_argument("--save-every", type=int, default=500, help="steps between checkpoints")
    p.add_argument("--log-every", type=int, default=10, help="steps between logged losses")
    p.add_argument(
        "--sample-every",
        type=int,
        default=0,
        help="steps between sample grids in TensorBoard (0: only at the end)",
    )
    p.add_argument("--threads", type=int, default=0, help="torch threads per process (0: default)")
    resume = p.add_mutually_exclusive_group()
    resume.add_argument(
        "--resume", default=None, help="'latest' or a checkpoint path: continue the run"
    )
    resume.add_argument(
        "--overwrite", action="store_true", help="delete the run in --run-dir and start over"
    )
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
        options = LoopOptions(
            run_dir=args.run_dir,
            steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr,
            warmup_steps=args.warmup_steps,
            lr_decay=args.lr_decay,
            optimizer="adamw",
            weight_decay=args.weight_decay,
            grad_clip=args.grad_clip,
            ema_decay=args.ema_decay,
            ema_warmup=args.ema_warmup,
            mixed_precision=args.mixed_precision,
            grad_accum=args.grad_accum,
            seed=args.seed,
            save_every=args.save_every,
            log_every=args.log_every,
            sample_every=args.sample_every,
            resume=args.resume,
            overwrite=args.overwrite,
            num_threads=args.threads,
        )
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
