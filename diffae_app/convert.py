"""Convert official DiffAE checkpoints into DiffAE Studio bundles, offline.

    from diffae_app.convert import convert_official
    convert_official("checkpoints/", "models/ffhq256")       # latent DPM + classifier if present
    convert_official("checkpoints/ffhq256_autoenc/last.ckpt", "models/ffhq256_autoenc")

    python -m diffae_app convert checkpoints/ models/ffhq256   # the CLI calls `main(argv)`

The official `last.ckpt` is read once, safely and memory-mapped (see `read_official`); only
its EMA weights are kept, and they are written straight from the mapped file into
safetensors. No network is built from real tensors: shapes are checked against the model
built on the meta device, so peak memory stays near the size of the EMA half of the file.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from .checkpoints import (
    BUNDLE_FORMAT,
    CheckpointError,
    OfficialWeights,
    check_state_dict,
    load_official,
    load_official_classifier,
    save_bundle,
    write_bundle_into_place,
)
from .classifier import AttributeClassifier
from .config import ModelConfig, preset
from .models import AutoencoderNet, LatentNet

CLASSIFIER_NAME = "celebahq"  # bundle file classifiers/celebahq.safetensors
_CHECKPOINT_SUFFIXES = (".ckpt", ".pt", ".pth")


def find_official_checkpoints(src: str | os.PathLike) -> tuple[Path, Path | None]:
    """(model checkpoint, classifier checkpoint or None) for a file or folder `src`.

    `src` may be a checkpoint file, one model folder (`checkpoints/ffhq256_autoenc_latent`,
    holding `last.ckpt`), or the official `checkpoints/` folder with one model folder per
    config. In the latter, a `*_latent` model is preferred over its plain autoencoder (it
    holds the same autoencoder plus the latent DPM), and the matching `<base>_cls` folder,
    if present, supplies the attribute classifier.
    """
    src = Path(src)
    if src.is_file():
        return src, None
    if not src.is_dir():
        raise CheckpointError(f"{src}: no such file or folder")
    if (src / "last.ckpt").is_file():
        return src / "last.ckpt", None
    folders = sorted(p.parent for p in src.glob("*/last.ckpt"))
    if not folders:
        files = sorted(p for p in src.iterdir() if p.suffix in _CHECKPOINT_SUFFIXES)
        if len(files) == 1:
            return files[0], None
        raise CheckpointError(
            f"{src}: no official checkpoint found (expected last.ckpt, <config>/last.ckpt or "
            f"one .ckpt file; found {len(files)} checkpoint files)"
        )
    models = {p.name: p for p in folders if not p.name.endswith("_cls")}
    for name in list(models):
        if f"{name}_latent" in models:
            del models[name]  # the _latent checkpoint contains this autoencoder too
    if not models:
        raise CheckpointError(
            f"{src}: only classifier checkpoints ({', '.join(p.name for p in folders)}); "
            "a classifier needs its autoencoder checkpoint"
        )
    if len(models) > 1:
        raise CheckpointError(
            f"{src}: holds several models ({', '.join(sorted(models))}); pass one model "
            f"folder, e.g. {src / sorted(models)[0]}"
        )
    (name, folder), *_ = models.items()
    cls_file = src / f"{name.removesuffix('_latent')}_cls" / "last.ckpt"
    return folder / "last.ckpt", cls_file if cls_file.is_file() else None


def _resolve_config(config: ModelConfig | str | None) -> ModelConfig | None:
    if isinstance(config, str):
        try:
            return preset(config)
        except ValueError as exc:
            raise CheckpointError(str(exc)) from None
    return config


def _check_shapes(weights: OfficialWeights, source: Path) -> None:
    """Strict key and shape check against the configured networks, built on `meta`."""
    config = weights.config
    with torch.device("meta"):
        autoencoder = AutoencoderNet(config.autoencoder)
        latent = LatentNet(config.latent_net) if config.latent_net is not None else None
    check_state_dict(autoencoder, weights.autoencoder, source=f"{source} (autoencoder)")
    if latent is not None and weights.latent_net is not None:
        check_state_dict(latent, weights.latent_net, source=f"{source} (latent DPM)")


def _load_classifier(path: Path, config: ModelConfig) -> AttributeClassifier:
    classifier = load_official_classifier(path)
    width = config.autoencoder.z_sem_channels
    if classifier.z_sem_channels != width:
        raise CheckpointError(
            f"{path}: classifier expects {classifier.z_sem_channels}-d z_sem, "
            f"the model's is {width}-d"
        )
    return classifier


def model_card(
    weights: OfficialWeights,
    source: Path,
    classifier_source: Path | None,
    classifier: AttributeClassifier | None,
) -> str:
    """README.md of a converted bundle: provenance, configuration and how to load it."""
    config = weights.config
    auto = config.autoencoder
    step = "unknown" if weights.global_step is None else str(weights.global_step)
    rows = [
        ("source file", f"`{source.resolve()}` ({source.stat().st_size:,} bytes)"),
        ("global_step", step),
        ("config", f"`{config.name}`"),
        ("image size", f"{auto.image_size} px"),
        ("base channels / multipliers", f"{auto.model_channels} / {auto.channel_mult}"),
        ("semantic encoder multipliers", str(auto.encoder_channel_mult)),
        ("z_sem width", str(auto.z_sem_channels)),
        (
            "latent DPM",
            f"yes ({config.latent_net.num_layers} layers)" if config.latent_net else "no",
        ),
        (
            "default steps (render / latent)",
            f"{config.default_render_steps} / {config.default_latent_steps}",
        ),
        ("weights", "EMA only, float32, safetensors"),
    ]
    if classifier is not None and classifier_source is not None:
        rows.append(
            (
                "attribute classifier",
                f"`classifiers/{CLASSIFIER_NAME}.safetensors` from `{classifier_source.resolve()}` "
                f"({len(classifier.attribute_names)} attributes)",
            )
        )
    table = "\n".join(f"| {key} | {value} |" for key, value in rows)
    attributes = ""
    if classifier is not None:
        attributes = (
            "\n## Attributes\n\n"
            f"{', '.join(classifier.attribute_names)}\n\n"
            "Rows of the official linear classifier on normalised z_sem (non-EMA weights and "
            "the classifier's own z statistics, as the official manipulation recipe uses).\n"
        )
    return f"""---
library_name: diffae-studio
tags:
- diffusion-autoencoder
- diffae
---

# {config.name}

A DiffAE Studio bundle converted from an official Diffusion Autoencoders checkpoint
(Preechakul et al., CVPR 2022, https://github.com/phizaz/diffae) by `diffae_app.convert`.

| | |
| --- | --- |
{table}

## Load

```python
from diffae_app import DiffAE

model = DiffAE.from_pretrained("path/to/this/folder")
z_sem = model.encode(x)                     # x: (B, 3, {auto.image_size}, {auto.image_size}) in [-1, 1]
x_T = model.encode_stochastic(x, z_sem, T=250)
image = model.render(x_T, z_sem, T=20)      # (B, 3, {auto.image_size}, {auto.image_size}) in [0, 1]
```

Files: `config.json` (architecture), `autoencoder.safetensors` (semantic encoder and
decoder UNet, official parameter names), `latent_net.safetensors` (latent DPM and the
z_sem statistics it normalises by, when present), `classifiers/` (attribute classifiers).
{attributes}
## Licence

These weights are a format conversion of the official release. Check the terms of the
original release and of its training data before redistributing them.
"""


def _is_bundle_or_empty(directory: Path) -> bool:
    if not any(directory.iterdir()):
        return True
    try:
        meta = json.loads((directory / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return isinstance(meta, dict) and meta.get("format") == BUNDLE_FORMAT


def convert_official(
    src: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    config: ModelConfig | str | None = None,
    official_fields: Mapping[str, Any] | None = None,
    classifier: str | os.PathLike | bool | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a bundle (EMA weights, safetensors, README.md) from an official checkpoint.

    src: a checkpoint file or folder (see `find_official_checkpoints`). config: a
    ModelConfig or preset name, needed only when the checkpoint stores no hyper-parameters
    and its folder is not named after a preset. official_fields: official TrainConfig
    fields the checkpoint does not store (or that override stored ones), e.g.
    {'net_latent_activation': 'lrelu'}; see docs/OFFICIAL_FIELDS.md. classifier: an
    official classifier checkpoint; None uses the `<base>_cls/last.ckpt` found next to the
    model in a `checkpoints/` folder, False skips it. An existing non-empty `out_dir` is
    replaced only with `overwrite=True`, and only when it is a bundle. Returns `out_dir`.
    Raises CheckpointError with a one-line message naming the file at fault.
    """
    out_dir = Path(out_dir)
    model_path, found_classifier = find_official_checkpoints(src)
    if classifier is None:
        classifier_path = found_classifier
    elif classifier is False:
        classifier_path = None
    elif classifier is True:
        if found_classifier is None:
            raise CheckpointError(f"{src}: no <config>_cls/last.ckpt classifier next to the model")
        classifier_path = found_classifier
    else:
        classifier_path = Path(classifier)
    if out_dir.exists():
        if not out_dir.is_dir():
            raise CheckpointError(f"{out_dir}: exists and is not a folder")
        if any(out_dir.iterdir()) and not overwrite:
            raise CheckpointError(f"{out_dir}: exists and is not empty; pass overwrite=True")
        if not _is_bundle_or_empty(out_dir):
            raise CheckpointError(f"{out_dir}: exists and is not a bundle; refusing to replace it")

    # Memory-mapped; holds only the EMA tensors (the online weights are never touched).
    weights = load_official(
        model_path, config=_resolve_config(config), official_fields=official_fields
    )
    _check_shapes(weights, model_path)
    classifiers = {}
    if classifier_path is not None:
        classifiers[CLASSIFIER_NAME] = _load_classifier(classifier_path, weights.config)
    card = model_card(weights, model_path, classifier_path, classifiers.get(CLASSIFIER_NAME))

    return write_bundle_into_place(
        out_dir,
        lambda folder: save_bundle(
            folder,
            weights.config,
            weights.autoencoder,
            latent_net=weights.latent_net,
            z_mean=weights.z_mean,
            z_std=weights.z_std,
            classifiers=classifiers,
            model_card=card,
        ),
    )


def _parse_fields(items: Sequence[str]) -> dict[str, Any]:
    """NAME=VALUE pairs; VALUE as JSON (3, true, [1, 2], null) when it parses, else text."""
    fields: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name.strip():
            raise CheckpointError(f"--field {item!r}: expected NAME=VALUE")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        fields[name.strip()] = value
    return fields


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m diffae_app convert SRC OUT [...]`: exit code 0; on failure a one-line
    error on stderr and exit code 2 (bad checkpoint, arguments) or 1 (I/O error)."""
    parser = argparse.ArgumentParser(
        prog="python -m diffae_app convert",
        description="Convert an official DiffAE checkpoint (file or checkpoints/ folder) "
        "into a DiffAE Studio bundle. Offline; keeps the EMA weights only.",
    )
    parser.add_argument(
        "src", help="last.ckpt, a model folder, or the official checkpoints/ folder"
    )
    parser.add_argument("out", help="bundle folder to write")
    parser.add_argument("--config", help="preset name, when the checkpoint does not tell")
    parser.add_argument(
        "--field",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an official TrainConfig field the checkpoint does not store, e.g. "
        "net_latent_activation=lrelu (repeatable; VALUE is read as JSON when it parses, "
        "else as text; see docs/OFFICIAL_FIELDS.md)",
    )
    classifier = parser.add_mutually_exclusive_group()
    classifier.add_argument("--classifier", help="official attribute-classifier checkpoint")
    classifier.add_argument(
        "--no-classifier", action="store_true", help="skip the classifier found in SRC"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing bundle")
    parser.add_argument(
        "--classifier-to",
        nargs="?",
        const="",
        metavar="DIR",
        help="also place the converted classifier in DIR (default: the repository's "
        "classifiers/) as a standalone artefact recording the model's fingerprint",
    )
    args = parser.parse_args(argv)
    try:
        out = convert_official(
            args.src,
            args.out,
            config=args.config,
            official_fields=_parse_fields(args.field),
            classifier=False if args.no_classifier else args.classifier,
            overwrite=args.overwrite,
        )
    except CheckpointError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except OSError as exc:  # unwritable output folder, disk full, ...
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    if args.classifier_to is not None:
        try:
            placed = place_classifier(out, args.classifier_to or None)
        except (CheckpointError, OSError) as exc:
            print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
            return 1 if isinstance(exc, OSError) else 2
        print(f"wrote {placed}")
    return 0


def place_classifier(bundle: str | os.PathLike, folder: str | os.PathLike | None = None) -> Path:
    """Copy a bundle's converted classifier into ``folder`` (default
    :func:`~diffae_app.classifier.classifiers_dir`) as a standalone artefact that records the
    bundle model's fit fingerprint, so the app lists it whenever that model is loaded.

    Raises:
        CheckpointError: the bundle has no converted classifier.
    """
    from .classifier import artefact_name, classifiers_dir
    from .studio import fit_fingerprint

    source = Path(bundle) / "classifiers" / f"{CLASSIFIER_NAME}.safetensors"
    if not source.is_file():
        raise CheckpointError(f"{bundle}: the bundle has no {CLASSIFIER_NAME} classifier to place")
    from .diffae import DiffAE

    fingerprint = fit_fingerprint(DiffAE.from_pretrained(bundle, device="cpu"))
    classifier = dataclasses.replace(
        AttributeClassifier.load(source), model_fingerprint=fingerprint
    )
    target = Path(folder) if folder is not None else classifiers_dir()
    return classifier.save(target / artefact_name(CLASSIFIER_NAME, fingerprint))


if __name__ == "__main__":
    sys.exit(main())
