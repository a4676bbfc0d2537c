"""What every train/ script's command line shares: its help layout, the extras check and the
training loop's flags."""

from __future__ import annotations

import argparse
import copy
import importlib
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .loop import LoopOptions

#: Packages of requirements-train.txt that the training scripts import (pip name: module).
TRAINING_EXTRAS = {"accelerate": "accelerate", "tensorboard": "tensorboard"}
REQUIREMENTS_FILE = "requirements-train.txt"


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's line breaks (its example commands) and shows every option's
    default; argparse's own ArgumentDefaultsHelpFormatter skips options without help text."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            action.option_strings
            and "%(default)" not in text
            and default is not None
            and default is not argparse.SUPPRESS
            and not isinstance(action, argparse._HelpAction | argparse._VersionAction)
            and not (isinstance(action, argparse._StoreTrueAction) and default is False)
        ):
            text = f"{text} (default: %(default)s)" if text else "default: %(default)s"
        return text

    def _format_action(self, action: argparse.Action) -> str:
        # argparse prints no help column for an option without help text; give it one.
        if action.help is None and action.option_strings:
            action = copy.copy(action)
            action.help = self._get_help_string(action) or None
        return super()._format_action(action)


def secondary_rank() -> bool:
    """True in a process other than rank 0 under `accelerate launch`/torchrun, where a
    one-process job (data preparation, classifier fitting, export) has nothing to do."""
    return int(os.environ.get("RANK", "0")) > 0


def missing_training_extras(packages: tuple[str, ...] = tuple(TRAINING_EXTRAS)) -> list[str]:
    """Pip names of the training extras (of ``packages``) that cannot be imported here."""
    missing = []
    for package in packages:
        module = TRAINING_EXTRAS[package]
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(package)
    return missing


def training_extras_error(packages: tuple[str, ...] = tuple(TRAINING_EXTRAS)) -> str | None:
    """One line naming what to install when training extras are missing, else None."""
    missing = missing_training_extras(packages)
    if not missing:
        return None
    return (
        f"{', '.join(missing)} not installed: training needs the extras in {REQUIREMENTS_FILE}; "
        f"run `pip install -r {REQUIREMENTS_FILE}`"
    )


def add_loop_arguments(p: argparse.ArgumentParser, *, batch_size: int, optimizer: str) -> None:
    """The flags of :class:`LoopOptions` that every training stage takes, with the stage's
    default global batch size; ``optimizer`` names the optimiser in the --lr help."""
    p.add_argument("--run-dir", required=True, help="folder of this run (one run per folder)")
    p.add_argument("--steps", type=int, required=True, help="optimiser steps in total")
    p.add_argument("--batch-size", type=int, default=batch_size, help="global batch size")
    p.add_argument("--lr", type=float, default=1e-4, help=f"peak learning rate ({optimizer})")
    p.add_argument("--warmup-steps", type=int, default=0, help="linear learning-rate warm-up")
    p.add_argument(
        "--lr-decay",
        choices=["constant", "cosine"],
        default="constant",
        help="cosine: down to 10%% of --lr at the last step",
    )
    p.add_argument("--ema-decay", type=float, default=0.9999, help="EMA decay (official 0.9999)")
    p.add_argument(
        "--ema-warmup",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="ramp the EMA decay up as min(decay, (1+s)/(10+s)); --no-ema-warmup is the "
        "official recipe, whose EMA stays near the random start for ~10,000 steps",
    )
    p.add_argument("--grad-clip", type=float, default=1.0, help="max gradient norm (0: off)")
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches per step")
    p.add_argument(
        "--mixed-precision",
        choices=["no", "bf16", "fp16"],
        default="no",
        help="autocast dtype (bf16: CPUs with AMX and Ampere+ GPUs)",
    )
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


def loop_options(
    args: argparse.Namespace, *, optimizer: str, weight_decay: float = 0.0
) -> LoopOptions:
    """:class:`LoopOptions` from the flags of :func:`add_loop_arguments`."""
    from .loop import LoopOptions

    return LoopOptions(
        run_dir=args.run_dir,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup_steps=args.warmup_steps,
        lr_decay=args.lr_decay,
        optimizer=optimizer,
        weight_decay=weight_decay,
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
