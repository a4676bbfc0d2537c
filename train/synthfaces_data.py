r"""Write a SynthFaces training set: procedural faces as PNGs plus their attribute labels.

    python train/synthfaces_data.py data/synthfaces32 --count 512 --size 32
    python train/synthfaces_data.py runs/synthfaces64/data --count 20000 --size 64

Face i is drawn from seed START + i (the same face at any size, on any machine), saved as
`{seed:08d}.png`, and `attributes.csv` lists its 15 SynthFaces attributes as 0/1
(`image_id,<attribute>...`), ready for `train/classifiers.py --labels`. The folder is then
`--data` for `train/autoencoder.py` and `train/encode_dataset.py` (the CSV is not an image and
is ignored there). Written to `OUT.tmp` and renamed, so an interrupted write leaves no
half-filled OUT; an existing OUT is refused unless `--overwrite`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from diffae_app.data.synthfaces import write_image_folder
from diffae_app.training.cli import HelpFormatter


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("out", help="folder to write (must not exist, unless --overwrite)")
    p.add_argument("--count", type=int, default=1000, help="number of faces")
    p.add_argument("--size", type=int, default=64, help="side of the images in pixels")
    p.add_argument("--start", type=int, default=0, help="seed of the first face")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if int(os.environ.get("RANK", "0")) > 0:
        return 0  # a one-process job: under `accelerate launch`/torchrun rank 0 alone does it
    out = Path(args.out)
    problem = None
    if args.count < 1:
        problem = f"--count must be at least 1, got {args.count}"
    elif not 8 <= args.size <= 1024:
        problem = f"--size must be between 8 and 1024 pixels, got {args.size}"
    elif args.start < 0:
        problem = f"--start must be >= 0, got {args.start}"
    elif out.exists() and not args.overwrite:
        problem = f"{out} already exists; choose another folder or pass --overwrite"
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    started = time.perf_counter()
    try:
        write_image_folder(tmp, args.start, args.count, args.size)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        print(f"error: cannot write {out}: {exc}", file=sys.stderr)
        return 2
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    seconds = time.perf_counter() - started
    print(
        f"wrote {args.count} faces of {args.size} px (seeds {args.start}-"
        f"{args.start + args.count - 1}) and attributes.csv to {out} in {seconds:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
