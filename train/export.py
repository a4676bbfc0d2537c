r"""Export a training run (autoencoder or latent DPM) to an EMA-only inference bundle.

    python train/export.py runs/sf64/autoencoder --out bundles/sf64_autoencoder
    python train/export.py runs/sf64/latent --checkpoint runs/sf64/latent/checkpoints/state-00003000.pt \
        --out assets/models/synthfaces64 --classifier runs/sf64/classifiers/synthfaces.safetensors

Takes the newest checkpoint of RUN_DIR (or `--checkpoint`), so a run can be exported at any
checkpoint, e.g. when stopped early. The bundle holds the resolved config (config.json), the
EMA weights in safetensors, the given classifier artefacts (`--classifier`, repeatable; a
latent run also keeps those of its autoencoder bundle) and a model card (README.md) that
records the data, the step, the loss, the classifier metrics and the resolved options.
A latent DPM run is exported on top of the autoencoder bundle it was trained for
(`--autoencoder-bundle` when that folder has moved). An existing OUT is replaced atomically.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch

from diffae_app.checkpoints import CheckpointError
from diffae_app.config import SamplerConfig
from diffae_app.training.cli import HelpFormatter
from diffae_app.training.export import ExportError, export_run


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("run_dir", help="a training run folder (options.json + checkpoints/)")
    p.add_argument("--out", required=True, help="bundle folder to write")
    p.add_argument("--checkpoint", default=None, help="a checkpoint file (default: the newest)")
    p.add_argument("--autoencoder-bundle", default=None, help="latent runs: the autoencoder bundle")
    p.add_argument(
        "--classifier", action="append", default=[], help="classifier artefact to include"
    )
    p.add_argument(
        "--sampler",
        default=None,
        help='image sampler settings as JSON, e.g. \'{"spacing": "power", "power": 1.25, '
        "\"inversion_fixed_point_iterations\": 1}' (default: the run config's)",
    )
    p.add_argument(
        "--latent-dtype",
        choices=["float32", "float16"],
        default="float32",
        help="storage dtype of the latent DPM weights (float16 halves the file)",
    )
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if int(os.environ.get("RANK", "0")) > 0:
        return 0  # a one-process job: under `accelerate launch`/torchrun rank 0 alone does it
    try:
        sampler = SamplerConfig(**json.loads(args.sampler)) if args.sampler else None
        out = export_run(
            args.run_dir,
            args.out,
            checkpoint=args.checkpoint,
            autoencoder_bundle=args.autoencoder_bundle,
            classifiers=args.classifier,
            sampler=sampler,
            latent_dtype=getattr(torch, args.latent_dtype),
            on_warning=lambda text: print(f"warning: {text}", file=sys.stderr),
        )
    except (CheckpointError, ExportError, ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"exported {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
