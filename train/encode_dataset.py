r"""Stage 2: z_sem of every training image with the EMA encoder -> a latents file.

    python train/encode_dataset.py --model runs/sf64/autoencoder/bundle --data data/faces \
        --out runs/sf64/latents.safetensors
    accelerate launch train/encode_dataset.py --model runs/ffhq256 --data lmdb:ffhq256.lmdb ...

`--model` is a bundle folder, an autoencoder run folder (its newest checkpoint's EMA
weights; `--checkpoint` picks another) or a checkpoint file. `--data` is an image folder
(recursive, sorted; ids are relative paths), `lmdb:PATH` (ids are the LMDB keys) or
`synthfaces:START:COUNT`. Images are encoded at the model's resolution without flips.
Unreadable files are skipped with a counted warning and left out of the file. The output
(see diffae_app/training/latents.py) holds z_sem, the image ids and the mean/std that the
latent DPM and the classifiers normalise with. Under `accelerate launch` each process
encodes a contiguous shard; rank 0 writes the file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from diffae_app.models import AutoencoderNet
from diffae_app.training.cli import HelpFormatter, training_extras_error
from diffae_app.training.data import DatasetError, SynthFacesImages, open_dataset
from diffae_app.training.export import ExportError, load_autoencoder_source
from diffae_app.training.latents import (
    LatentCodes,
    LatentsError,
    encode_items,
    latent_stats,
    save_latents,
)

DTYPES = {"no": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument(
        "--model", required=True, help="bundle folder, autoencoder run folder or checkpoint"
    )
    p.add_argument("--checkpoint", default=None, help="with a run folder: this checkpoint file")
    p.add_argument(
        "--data", required=True, help="image folder, lmdb:PATH or synthfaces:START:COUNT"
    )
    p.add_argument(
        "--lmdb-resolution", type=int, default=None, help="resolution the LMDB was written at"
    )
    p.add_argument("--out", required=True, help="the latents .safetensors file to write")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    p.add_argument("--mixed-precision", choices=list(DTYPES), default="no", help="autocast dtype")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--threads", type=int, default=0, help="torch threads per process (0: default)")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def _shard(n: int, world: int, rank: int) -> range:
    per = -(-n // world)
    return range(min(n, rank * per), min(n, (rank + 1) * per))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if missing := training_extras_error(("accelerate",)):
        print(f"error: {missing}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        if args.batch_size < 1:
            raise ValueError(f"--batch-size must be positive, got {args.batch_size}")
        config, tensors, model_source = load_autoencoder_source(
            args.model, checkpoint=args.checkpoint
        )
        dataset = open_dataset(
            args.data, config.autoencoder.image_size, lmdb_resolution=args.lmdb_resolution
        )
        if isinstance(dataset, SynthFacesImages) and args.data.count(":") < 2:
            raise DatasetError("give the faces to encode as synthfaces:START:COUNT")
        codes = _encode(args, config, tensors, dataset, model_source)
    except (DatasetError, ExportError, LatentsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if codes is not None:
        print(f"wrote {args.out}: {len(codes.ids)} codes of {codes.width} dims")
    return 0


def _encode(args, config, tensors, dataset, model_source) -> LatentCodes | None:
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    world, rank = accelerator.num_processes, accelerator.process_index
    net = AutoencoderNet(config.autoencoder)
    try:
        net.load_state_dict(tensors)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ValueError(f"{model_source} does not fit its own config: {first}") from None
    encoder = net.encoder.eval().requires_grad_(False).to(accelerator.device)
    n = len(dataset)
    mine = _shard(n, world, rank)
    z, kept, skipped = encode_items(
        encoder,
        dataset,
        mine,
        batch_size=args.batch_size,
        device=accelerator.device,
        dtype=DTYPES[args.mixed_precision],
        num_workers=args.workers,
        progress=accelerator.is_main_process,
    )
    width = config.autoencoder.z_sem_channels
    if world > 1:
        # Equal shapes for gather: pad every shard to the longest; -1 marks padding/skipped.
        per = -(-n // world)
        padded = torch.zeros(per, width)
        index = torch.full((per,), -1, dtype=torch.int64)
        if kept:  # a rank's shard can be empty (fewer images than processes)
            padded[: len(kept)] = z
            index[: len(kept)] = torch.tensor(kept, dtype=torch.int64)
        all_z = accelerator.gather(padded.to(accelerator.device)).cpu()
        all_index = accelerator.gather(index.to(accelerator.device)).cpu()
        skipped_count = int(
            accelerator.reduce(torch.tensor(len(skipped), device=accelerator.device), "sum")
        )
        keep = all_index >= 0
        z, kept = all_z[keep], all_index[keep].tolist()
    else:
        skipped_count = len(skipped)
    if len(kept) < 2:  # every rank has the gathered result, so all stop together
        raise DatasetError(f"only {len(kept)} of {n} images of {args.data} could be read")
    result = None
    if accelerator.is_main_process:
        z_mean, z_std = latent_stats(z)
        ids = tuple(dataset.item_id(i) for i in kept)
        result = LatentCodes(
            z_sem=z,
            ids=ids,
            z_mean=z_mean,
            z_std=z_std,
            source={
                "model": model_source,
                "config": config.name,
                "data": args.data,
                "images": n,
                "skipped_unreadable": skipped_count,
            },
        )
        save_latents(Path(args.out), result)
        if skipped_count:
            print(f"skipped {skipped_count} unreadable images", file=sys.stderr)
    accelerator.wait_for_everyone()
    return result


if __name__ == "__main__":
    sys.exit(main())
