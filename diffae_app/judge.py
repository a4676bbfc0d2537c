"""The independent judge: a small pixel-space CNN that reads SynthFaces attributes from images.

Editing is proven by the generator's ground truth: an edit must change the attribute it names
and leave the others alone. Reading attributes off an *edited image* needs a judge that never
saw the DiffAE latents, so this one is trained on generated images only (with the kind of
degradations a 64 px diffusion model's output has: slight blur, noise, colour shifts and 1-2 px
shifts). Its held-out accuracy per attribute, measured on ``HELDOUT_SEED_START`` seeds, is saved
with the weights; ``load_judge`` refuses a judge below ``min_accuracy`` on any attribute.

Artefact: ``<dir>/synthfaces64_judge.safetensors`` (weights) + ``<dir>/synthfaces64_judge.json``
(constructor config, attribute names, measured accuracies, training options).

CLI::

    python -m diffae_app.judge --train --out assets/judge/      # train, print table, save
    python -m diffae_app.judge --evaluate --out assets/judge/   # re-measure on fresh seeds
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from diffae_app.data.synthfaces import (
    ATTRIBUTES,
    HELDOUT_SEED_START,
    TRAIN_SEED_END,
    generate_batch,
)

__all__ = [
    "JUDGE_NAME",
    "AttributeJudge",
    "JudgeNotGoodEnough",
    "augment",
    "evaluate_judge",
    "format_accuracy_table",
    "images_to_tensor",
    "load_judge",
    "save_judge",
    "train_judge",
]

JUDGE_NAME = "synthfaces64_judge"
"""File stem of the judge artefact (``.safetensors`` + ``.json``)."""

# Seeds used for the accuracy stored with the judge; tests use later held-out seeds so they
# measure on faces that neither training nor the stored measurement saw.
_EVAL_SEED_START = HELDOUT_SEED_START
_DEFAULT_EVAL_COUNT = 2000


class JudgeNotGoodEnough(RuntimeError):
    """The judge's measured accuracy on some attribute is below the required minimum.

    Attributes:
        failing: ``{attribute: measured accuracy}`` for every attribute below the minimum.
        min_accuracy: the required minimum.
    """

    def __init__(self, failing: Mapping[str, float], min_accuracy: float) -> None:
        self.failing = dict(failing)
        self.min_accuracy = min_accuracy
        listed = ", ".join(f"{name}={acc:.3f}" for name, acc in self.failing.items())
        super().__init__(
            f"judge accuracy below {min_accuracy:.3f} on: {listed}; retrain it with "
            "`python -m diffae_app.judge --train` (more steps) or make the attribute more visible "
            "in diffae_app/data/synthfaces.py"
        )


class AttributeJudge(nn.Module):
    """Small CNN: image (B, 3, 64, 64) in [-1, 1] -> attribute logits (B, len(attribute_names)).

    Four stride-2 stages (64 -> 4 px) of conv-BN-ReLU, then a linear layer over the flattened
    4x4 map: the flatten keeps *where* a feature is (forehead vs. chin matters), unlike pooling.

    Args:
        attribute_names: names of the outputs, in order (saved in the JSON).
        width: channels of the first stage; later stages use 2x, 4x, 4x. 16 (~120k
            parameters, 0.5 MB) already reads every SynthFaces attribute at >99 %.
        image_size: input side in pixels (must be divisible by 16).
    """

    def __init__(
        self,
        *,
        attribute_names: Sequence[str] = ATTRIBUTES,
        width: int = 16,
        image_size: int = 64,
    ) -> None:
        super().__init__()
        if image_size % 16 != 0:
            raise ValueError(f"image_size must be divisible by 16, got {image_size}")
        self.attribute_names = tuple(attribute_names)
        self.width = width
        self.image_size = image_size
        channels = [3, width, 2 * width, 4 * width, 4 * width]
        layers: list[nn.Module] = []
        for i, (c_in, c_out) in enumerate(zip(channels[:-1], channels[1:], strict=True)):
            layers += [
                nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
            if i in (1, 2):
                # One extra stride-1 conv at 16 and 8 px, where the face parts are resolved.
                layers += [
                    nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
                    nn.BatchNorm2d(c_out),
                    nn.ReLU(inplace=True),
                ]
        self.features = nn.Sequential(*layers)
        final = image_size // 16
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(0.1),
            nn.Linear(channels[-1] * final * final, len(self.attribute_names)),
        )

    def config(self) -> dict[str, object]:
        """The constructor arguments (what the JSON stores to rebuild the model)."""
        return {
            "attribute_names": list(self.attribute_names),
            "width": self.width,
            "image_size": self.image_size,
        }

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) in [-1, 1] -> logits (B, A); sigmoid(logit) = P(attribute)."""
        return self.head(self.features(images))

    @torch.no_grad()
    def penultimate(self, images: torch.Tensor) -> torch.Tensor:
        """The flattened feature map the final linear layer reads, (B, 4w * (H/16)^2), for
        images in [-1, 1]: the judge's view of a face, used for the Fréchet judge distance
        ("FJD", the FID idea with this judge in place of Inception). Call ``.eval()`` first."""
        return self.head[0](self.features(images))

    @torch.no_grad()
    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """P(attribute) (B, A) in [0, 1] for images (B, 3, H, W) in [-1, 1] (e.g. decoded
        samples); call ``.eval()`` first (``load_judge`` returns the model in eval mode)."""
        return torch.sigmoid(self(images))


def images_to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) in 0..255 -> float32 (N, 3, H, W) in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Degrade a batch the way a small diffusion model's samples are degraded.

    Per image: a shift of up to 2 px (edge-replicated), a random mix with a blurred copy (a
    slight blur), per-channel gain/offset (colour shift) and Gaussian noise.

    Args:
        images: float (B, 3, H, W) in [-1, 1].
        generator: the random source (the caller owns it; no global RNG is touched).

    Returns:
        float (B, 3, H, W), clipped to [-1, 1].
    """
    batch, channels, height, width = images.shape
    pad = 2
    padded = F.pad(images, (pad, pad, pad, pad), mode="replicate")
    offsets = torch.randint(0, 2 * pad + 1, (batch, 2), generator=generator)
    shifted = torch.stack(
        [
            padded[i, :, dy : dy + height, dx : dx + width]
            for i, (dy, dx) in enumerate(offsets.tolist())
        ]
    )
    kernel_1d = torch.tensor([0.25, 0.5, 0.25])
    kernel = (kernel_1d[:, None] * kernel_1d[None, :]).expand(channels, 1, 3, 3)

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, groups=channels)

    # Blur amount in [0, 2] for 70 % of images: 0..1 blends towards one pass of the binomial
    # kernel (sigma ~0.7 px), 1..2 towards two passes (sigma ~1 px).
    once = blur(shifted)
    twice = blur(once)
    amount = 2.0 * torch.rand(batch, 1, 1, 1, generator=generator)
    amount = amount * (torch.rand(batch, 1, 1, 1, generator=generator) < 0.7)
    first, second = amount.clamp(max=1.0), (amount - 1.0).clamp(min=0.0)
    out = shifted + first * (once - shifted) + second * (twice - once)
    gain = 1.0 + 0.08 * (2.0 * torch.rand(batch, channels, 1, 1, generator=generator) - 1.0)
    offset = 0.08 * (2.0 * torch.rand(batch, channels, 1, 1, generator=generator) - 1.0)
    noise_std = 0.06 * torch.rand(batch, 1, 1, 1, generator=generator)
    noise = torch.randn(out.shape, generator=generator) * noise_std
    return (out * gain + offset + noise).clamp_(-1.0, 1.0)


@torch.no_grad()
def evaluate_judge(
    model: AttributeJudge,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    batch_size: int = 256,
    degrade_seed: int | None = None,
) -> dict[str, float]:
    """Per-attribute accuracy of ``model`` (threshold logit 0).

    Args:
        images: uint8 (N, H, W, 3).
        labels: int8 (N, A) in {0, 1}, columns in ``model.attribute_names`` order.
        degrade_seed: if given, images are first passed through ``augment`` with this seed,
            to measure robustness to diffusion-like degradations.

    Returns:
        ``{attribute: accuracy in [0, 1]}``.
    """
    was_training = model.training
    model.eval()
    generator = None if degrade_seed is None else torch.Generator().manual_seed(degrade_seed)
    correct = np.zeros(len(model.attribute_names), dtype=np.int64)
    for start in range(0, len(images), batch_size):
        batch = images_to_tensor(images[start : start + batch_size])
        if generator is not None:
            batch = augment(batch, generator)
        logits = model(batch)
        predicted = (logits > 0).numpy().astype(np.int8)
        correct += (predicted == labels[start : start + batch_size]).sum(axis=0)
    model.train(was_training)
    return {
        name: float(c) / len(images) for name, c in zip(model.attribute_names, correct, strict=True)
    }


def train_judge(
    num_train: int = 20_000,
    steps: int = 2000,
    seed: int = 0,
    *,
    batch_size: int = 64,
    learning_rate: float = 2e-3,
    num_eval: int = _DEFAULT_EVAL_COUNT,
    width: int = 16,
    log: Callable[[str], None] | None = print,
) -> tuple[AttributeJudge, dict[str, float]]:
    """Train a judge on SynthFaces seeds ``[seed * num_train, (seed + 1) * num_train)``.

    All training seeds lie in the training split; accuracy is measured on ``num_eval`` held-out
    faces from ``HELDOUT_SEED_START``, without augmentation.

    Args:
        num_train: number of distinct training faces (rendered once, augmented every step).
        steps: optimiser steps of ``batch_size`` images (AdamW, one-cycle learning rate).
        seed: seeds the model init, batch order and augmentation, and picks the face range.
        log: progress printer, or None for silence.

    Returns:
        (trained model in eval mode, ``{attribute: held-out accuracy}``).
    """
    if num_train < 1 or steps < 1 or seed < 0 or (seed + 1) * num_train > TRAIN_SEED_END:
        raise ValueError(
            "need num_train >= 1, steps >= 1, seed >= 0 and (seed + 1) * num_train <= "
            f"TRAIN_SEED_END={TRAIN_SEED_END}; got num_train={num_train}, steps={steps}, "
            f"seed={seed}"
        )
    say = log or (lambda _message: None)
    generator = torch.Generator().manual_seed(seed)
    torch_state = torch.random.get_rng_state()
    torch.manual_seed(seed)  # nn.Module init draws from the global generator; restored below
    model = AttributeJudge(width=width)
    torch.random.set_rng_state(torch_state)

    start = time.perf_counter()
    train_images, train_labels = generate_batch(range(seed * num_train, (seed + 1) * num_train))
    # Kept as uint8 (N, H, W, 3); batches are converted on the fly (4x less memory than float).
    images = torch.from_numpy(train_images)
    targets = torch.from_numpy(train_labels).float()
    say(f"rendered {num_train} training faces in {time.perf_counter() - start:.1f}s")

    optimiser = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=learning_rate, total_steps=steps, pct_start=0.15
    )
    model.train()
    start = time.perf_counter()
    running = 0.0
    for step in range(1, steps + 1):
        index = torch.randint(0, num_train, (batch_size,), generator=generator)
        batch = augment(images_to_tensor(images[index].numpy()), generator)
        loss = F.binary_cross_entropy_with_logits(model(batch), targets[index])
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        running = 0.98 * running + 0.02 * loss.item() if step > 1 else loss.item()
        if step % 250 == 0 or step == steps:
            say(f"step {step}/{steps}  loss {running:.4f}  {time.perf_counter() - start:.0f}s")
    model.eval()

    eval_images, eval_labels = generate_batch(range(_EVAL_SEED_START, _EVAL_SEED_START + num_eval))
    accuracy = evaluate_judge(model, eval_images, eval_labels)
    return model, accuracy


def _paths(directory: str | os.PathLike[str]) -> tuple[Path, Path]:
    folder = Path(directory)
    return folder / f"{JUDGE_NAME}.safetensors", folder / f"{JUDGE_NAME}.json"


def save_judge(
    model: AttributeJudge,
    accuracy: Mapping[str, float],
    directory: str | os.PathLike[str],
    *,
    augmented_accuracy: Mapping[str, float] | None = None,
    training: Mapping[str, object] | None = None,
) -> tuple[Path, Path]:
    """Write ``<directory>/synthfaces64_judge.{safetensors,json}``; returns both paths.

    The JSON holds the constructor config, the attribute names, the held-out accuracy per
    attribute (the gate ``load_judge`` checks; where it was measured), optionally the accuracy
    on the same faces after ``augment`` (robustness, informative only) and training options.
    """
    weights_path, json_path = _paths(directory)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().contiguous() for name, tensor in model.state_dict().items()}
    save_file(state, str(weights_path))
    meta = {
        "config": model.config(),
        "attribute_names": list(model.attribute_names),
        "held_out_accuracy": {
            name: round(float(accuracy[name]), 5) for name in model.attribute_names
        },
        "held_out_accuracy_augmented": {
            name: round(float(value), 5) for name, value in (augmented_accuracy or {}).items()
        },
        "held_out_seeds": f"{_EVAL_SEED_START}..",
        "training": dict(training or {}),
    }
    json_path.write_text(json.dumps(meta, indent=2) + "\n")
    return weights_path, json_path


def load_judge(
    directory: str | os.PathLike[str], *, min_accuracy: float = 0.95
) -> tuple[AttributeJudge, dict[str, float]]:
    """Load the judge saved in ``directory`` and check its stored held-out accuracy.

    Args:
        directory: folder with ``synthfaces64_judge.safetensors`` and ``.json``.
        min_accuracy: every attribute's stored held-out accuracy must reach this.

    Returns:
        (model in eval mode, ``{attribute: stored held-out accuracy}``).

    Raises:
        FileNotFoundError: the artefact is missing.
        ValueError: the artefact's attributes are not the generator's ``ATTRIBUTES``.
        JudgeNotGoodEnough: some attribute is below ``min_accuracy``.
    """
    weights_path, json_path = _paths(directory)
    for path in (weights_path, json_path):
        if not path.is_file():
            raise FileNotFoundError(
                f"judge file {path} not found; train one with "
                f"`python -m diffae_app.judge --train --out {directory}`"
            )
    meta = json.loads(json_path.read_text())
    names = tuple(meta["attribute_names"])
    if names != ATTRIBUTES:
        raise ValueError(
            f"{json_path}: judge attributes {names} differ from the generator's {ATTRIBUTES}"
        )
    accuracy = {name: float(meta["held_out_accuracy"][name]) for name in names}
    failing = {name: acc for name, acc in accuracy.items() if acc < min_accuracy}
    if failing:
        raise JudgeNotGoodEnough(failing, min_accuracy)
    config = meta["config"]
    model = AttributeJudge(
        attribute_names=tuple(config["attribute_names"]),
        width=int(config["width"]),
        image_size=int(config["image_size"]),
    )
    model.load_state_dict(load_file(str(weights_path)))
    model.eval()
    return model, accuracy


def format_accuracy_table(columns: Mapping[str, Mapping[str, float]]) -> str:
    """A plain-text table: one row per attribute, one column per ``{title: accuracies}``.

    The last rows give each column's minimum and mean.
    """
    titles = list(columns)
    names = list(next(iter(columns.values())))
    first = max(len(name) for name in [*names, "attribute"])
    widths = [max(len(title), 8) for title in titles]

    def row(label: str, cells: Sequence[str]) -> str:
        return "  ".join(
            [f"{label:<{first}}", *(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True))]
        )

    rule = "  ".join(["-" * first, *("-" * w for w in widths)])
    rows = [row("attribute", titles), rule]
    rows += [row(name, [f"{columns[t][name] * 100:.2f} %" for t in titles]) for name in names]
    rows.append(rule)
    rows.append(row("min", [f"{min(columns[t].values()) * 100:.2f} %" for t in titles]))
    mean = [sum(columns[t].values()) / len(columns[t]) for t in titles]
    rows.append(row("mean", [f"{m * 100:.2f} %" for m in mean]))
    return "\n".join(rows)


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Train or evaluate the SynthFaces attribute judge."
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--train", action="store_true", help="train a judge and save it to --out")
    action.add_argument(
        "--evaluate", action="store_true", help="measure the saved judge on fresh held-out seeds"
    )
    parser.add_argument(
        "--out", default="assets/judge", help="artefact folder (default: assets/judge)"
    )
    parser.add_argument("--num-train", type=int, default=20_000, help="distinct training faces")
    parser.add_argument("--steps", type=int, default=2000, help="optimiser steps")
    parser.add_argument("--width", type=int, default=16, help="channels of the first stage")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--num-eval", type=int, default=_DEFAULT_EVAL_COUNT, help="held-out faces to measure on"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument(
        "--min-accuracy", type=float, default=0.95, help="gate every attribute must pass"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    if args.train:
        options = {
            "num_train": args.num_train,
            "steps": args.steps,
            "batch_size": args.batch_size,
            "learning_rate": args.learning_rate,
            "seed": args.seed,
            "num_eval": args.num_eval,
            "width": args.width,
            "threads": args.threads,
        }
        start = time.perf_counter()
        model, accuracy = train_judge(
            args.num_train,
            args.steps,
            args.seed,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            num_eval=args.num_eval,
            width=args.width,
        )
        options["train_seconds"] = round(time.perf_counter() - start, 1)
        images, labels = generate_batch(range(_EVAL_SEED_START, _EVAL_SEED_START + args.num_eval))
        augmented = evaluate_judge(model, images, labels, degrade_seed=args.seed + 1)
        table = {f"held-out ({args.num_eval} faces)": accuracy, "same, augmented": augmented}
        print(format_accuracy_table(table))
        weights_path, json_path = save_judge(
            model, accuracy, args.out, augmented_accuracy=augmented, training=options
        )
        print(f"saved {weights_path} ({weights_path.stat().st_size / 1e6:.2f} MB) and {json_path}")
        failing = {name: acc for name, acc in accuracy.items() if acc < args.min_accuracy}
        if failing:
            print(JudgeNotGoodEnough(failing, args.min_accuracy))
            return 1
        return 0

    model, stored = load_judge(args.out, min_accuracy=0.0)
    # Fresh faces: past the range the stored accuracy was measured on.
    start_seed = _EVAL_SEED_START + 1_000_000
    images, labels = generate_batch(range(start_seed, start_seed + args.num_eval))
    accuracy = evaluate_judge(model, images, labels)
    augmented = evaluate_judge(model, images, labels, degrade_seed=args.seed + 1)
    table = {
        "stored": stored,
        f"fresh ({args.num_eval} faces)": accuracy,
        "fresh, augmented": augmented,
    }
    print(format_accuracy_table(table))
    failing = {name: acc for name, acc in accuracy.items() if acc < args.min_accuracy}
    if failing:
        print(JudgeNotGoodEnough(failing, args.min_accuracy))
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
