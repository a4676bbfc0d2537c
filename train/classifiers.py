r"""Stage 4: linear attribute classifiers on normalised z_sem, for the editing sliders.

    python train/classifiers.py --latents runs/sf64/latents.safetensors \
        --labels data/attributes.csv --out runs/sf64/classifiers/synthfaces.safetensors
    python train/classifiers.py --latents celebahq_latents.safetensors \
        --celebahq-attr CelebAMask-HQ-attribute-anno.txt --bundle my_bundle --name celebahq

One class-balanced scikit-learn logistic regression per attribute on z_sem normalised by the
latents file's mean/std; a seeded held-out split (`--held-out`, 20%) measures accuracy,
balanced accuracy and AUROC, which are printed as a table and stored in the artefact together
with `weight_norm` and `logit_std` (how far a slider step moves the logit; see
diffae_app/training/attributes.py). Labels: a CSV (`image_id,<attr>...`, values in {-1,0,1}
where 0 is unknown, or {0,1}) or the CelebAMask-HQ attribute file. Image ids are matched by
relative path, then file name, then stem, then image number (so LMDB keys `256-00012` match
`12.jpg`). The artefact loads with `AttributeClassifier.load` and in bundles' classifiers/.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from diffae_app.checkpoints import CheckpointError, read_bundle_config
from diffae_app.classifier import ClassifierError
from diffae_app.training.attributes import (
    FitOptions,
    LabelError,
    fit_classifiers,
    metrics_table,
    read_celebahq_attributes,
    read_label_csv,
)
from diffae_app.training.cli import HelpFormatter
from diffae_app.training.latents import LatentsError, load_latents


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--latents", required=True, help="latents file from train/encode_dataset.py")
    labels = p.add_mutually_exclusive_group(required=True)
    labels.add_argument("--labels", help="CSV: image_id,<attribute>... (values -1/0/1 or 0/1)")
    labels.add_argument("--celebahq-attr", help="CelebAMask-HQ-attribute-anno.txt")
    p.add_argument(
        "--label-format",
        choices=["auto", "pm1", "01"],
        default="auto",
        help="CSV values: pm1 = {-1,0,1} with 0 unknown, 01 = {0,1}; auto: pm1 if any -1",
    )
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("--out", help="the classifier .safetensors file to write")
    out.add_argument("--bundle", help="write into BUNDLE/classifiers/NAME.safetensors")
    p.add_argument("--name", default=None, help="with --bundle: the artefact name")
    p.add_argument("--attributes", default=None, help="comma-separated subset (default: all)")
    p.add_argument("--held-out", type=float, default=0.2, help="fraction kept out for metrics")
    p.add_argument("--seed", type=int, default=0, help="seed of the held-out split")
    p.add_argument("--C", type=float, default=1.0, help="inverse L2 regularisation strength")
    p.add_argument("--max-iter", type=int, default=2000, help="solver iterations per attribute")
    # One thread is the right choice on a busy machine: the fit is memory-bound matrix-vector
    # work, and a second BLAS thread mostly waits for the first.
    p.add_argument("--threads", type=int, default=1, help="BLAS threads (0: library default)")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if int(os.environ.get("RANK", "0")) > 0:
        return 0  # a one-process job: under `accelerate launch`/torchrun rank 0 alone does it
    try:
        if args.bundle and not args.name:
            raise ValueError("--bundle needs --name (the artefact's file name in classifiers/)")
        codes = load_latents(args.latents)
        if args.bundle:
            width = read_bundle_config(args.bundle).autoencoder.z_sem_channels
            if width != codes.width:
                raise LatentsError(
                    f"{args.latents} holds {codes.width}-d codes, {args.bundle} makes {width}-d z_sem"
                )
            out = Path(args.bundle) / "classifiers" / f"{args.name}.safetensors"
        else:
            out = Path(args.out)
        if args.labels:
            labels = read_label_csv(args.labels, args.label_format)
            if line := labels.empty_cells_line():
                print(f"warning: {line}", file=sys.stderr)
        else:
            labels = read_celebahq_attributes(args.celebahq_attr)
        attributes = [a.strip() for a in args.attributes.split(",")] if args.attributes else None
        options = FitOptions(
            held_out=args.held_out,
            seed=args.seed,
            C=args.C,
            max_iter=args.max_iter,
            threads=args.threads,
        )
        source = (
            f"logistic regression (class-balanced, C={args.C}) on z_sem of {args.latents}, "
            f"labels {labels.source}, {args.held_out:.0%} held out (seed {args.seed})"
        )
        classifier = fit_classifiers(
            codes, labels, attributes=attributes, options=options, source=source, progress=True
        )
        # Temporary name + rename: a killed run never leaves a half-written artefact behind.
        tmp = classifier.save(out.with_name(out.name + ".tmp"))
        os.replace(tmp, out)
    except (CheckpointError, ClassifierError, LabelError, LatentsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(metrics_table(classifier))
    print(f"wrote {out} ({len(classifier.attribute_names)} attributes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
