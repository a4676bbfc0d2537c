r"""Align a folder of raw photos into a training set of FFHQ-aligned faces.

    python train/prepare_data.py photos/ data/aligned256 --size 256
    python train/prepare_data.py photos/ data/aligned64 --size 64 --detector dlib

Every image below the photo folder (recursive, any Pillow format; EXIF orientation applied)
gets its best face detected (diffae_app.align: face-alignment's FAN when its weights are on
disk, else dlib) and FFHQ-aligned at `--size`, saved as PNG under the same relative path.
Photos with no face, a face too small, or unreadable data are counted, listed in
OUT/prepare_report.json and skipped. Outputs already present are kept (`--overwrite` redoes
them), so an interrupted run continues. Then train with `train/autoencoder.py --data OUT`.
"""

from __future__ import annotations

import argparse
import os
import sys

from diffae_app.align import DETECTOR_NAMES, DetectorUnavailable, make_detector
from diffae_app.training.cli import HelpFormatter
from diffae_app.training.data import DatasetError
from diffae_app.training.prepare import REPORT_NAME, align_folder


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("photos", help="folder of raw photos (searched recursively)")
    p.add_argument("out", help="folder for the aligned PNGs")
    p.add_argument("--size", type=int, default=256, help="side of the aligned crops in pixels")
    p.add_argument(
        "--detector",
        choices=DETECTOR_NAMES,
        default="auto",
        help="face landmarks: auto = face-alignment if its weights are on disk, else dlib",
    )
    p.add_argument("--overwrite", action="store_true", help="redo images already aligned")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if int(os.environ.get("RANK", "0")) > 0:
        return 0  # a one-process job: under `accelerate launch`/torchrun rank 0 alone does it
    try:
        detector = make_detector(args.detector)
        report = align_folder(
            args.photos, args.out, detector, size=args.size, overwrite=args.overwrite
        )
    except (DatasetError, DetectorUnavailable, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report.line())
    print(f"report: {args.out}/{REPORT_NAME}")
    if report.aligned + report.already_done == 0:
        print("error: no photo gave an aligned face", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
