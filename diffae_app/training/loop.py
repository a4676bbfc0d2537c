"""One training loop for every stage, on Hugging Face Accelerate.

Accelerate owns devices, DDP across processes/nodes, mixed precision and gradient
accumulation (`accelerate launch train/autoencoder.py ...`). This loop adds what makes a
run reproducible and resumable:

* data order is a pure function of (seed, step): every rank computes the same global batch
  and takes its own slice, so ranks agree and a resume continues mid-epoch;
* the random draws of a step (timesteps, noise, flips, dropout) come from generators seeded
  by (seed, step, rank), so no RNG stream has to survive a crash;
* checkpoints (online + EMA weights, optimiser, scaler, step) are written atomically by
  rank 0 alone, and `--resume latest` continues bit-exactly on the CPU.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from .runs import check_run_dir, clear_run_dir, holds_run, quality_warnings
from .state import (
    TrainingStateError,
    ema_decay_at,
    ema_update,
    load_checkpoint,
    resolve_resume,
    save_checkpoint,
)


@dataclass(frozen=True)
class LoopOptions:
    """Optimisation options shared by every stage (each stage's script sets its defaults)."""

    run_dir: str  # where options.json, checkpoints/, logs/ and the exported bundle go
    steps: int  # optimiser steps in total (a resumed run stops at the same total)
    batch_size: int  # global batch: summed over processes and accumulation micro-batches
    lr: float = 1e-4  # peak learning rate (official: 1e-4 autoencoder, 1e-4 latent DPM)
    warmup_steps: int = 0  # linear learning-rate warm-up (official templates: 0)
    lr_decay: str = "constant"  # 'constant' or 'cosine' (to 10% of lr at the last step)
    optimizer: str = "adam"  # 'adam' (autoencoder) or 'adamw' (latent DPM)
    weight_decay: float = 0.0  # official latent DPM: 0.01 with AdamW
    grad_clip: float = 1.0  # max global gradient norm (official: 1)
    ema_decay: float = 0.9999  # official: 0.9999
    # Decay min(ema_decay, (1+s)/(10+s)). On by default: without it (the official recipe)
    # the EMA of a run shorter than ~10,000 steps is mostly its random initialisation.
    ema_warmup: bool = True
    mixed_precision: str = "no"  # 'no', 'bf16' (CPU with AMX, Ampere+) or 'fp16' (CUDA)
    grad_accum: int = 1  # micro-batches per optimiser step on each process
    seed: int = 0
    save_every: int = 500  # steps between checkpoints (and at the end)
    log_every: int = 10
    sample_every: int = 0  # steps between sample grids in TensorBoard; 0: only at the end
    resume: str | None = None  # None, 'latest', or a checkpoint path
    overwrite: bool = False  # delete a run already in run_dir and start over (else refused)
    num_threads: int = 0  # torch CPU threads per process; 0: leave torch's default

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Stage(Protocol):
    """What a training stage supplies to the loop."""

    name: str

    def build(self) -> nn.Module:
        """The trainable module (its forward is what DDP wraps)."""

    def num_items(self) -> int:
        """Dataset size, for the data order."""

    def loss(
        self, model: nn.Module, indices: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """Mean loss of one micro-batch given by dataset indices."""

    def describe(self) -> dict[str, Any]:
        """Resolved stage options, written to options.json before step 1."""

    def log_samples(self, ema: nn.Module, writer: Any, step: int) -> dict[str, float] | None:
        """Sample/reconstruction grids for TensorBoard; returns evaluation numbers (e.g.
        ``recon_psnr_T20``) that go into summary.json and the export's checks."""

    def data_report(self) -> dict[str, Any]:
        """Counts about the data seen (e.g. ``skipped_unreadable``) for summary.json."""

    def export(self, ema: nn.Module, run_dir: Path, summary: dict[str, Any]) -> Path | None:
        """Write the EMA-only inference artefact; return its path."""


def _lr_at(options: LoopOptions, step: int) -> float:
    if options.warmup_steps and step < options.warmup_steps:
        return options.lr * (step + 1) / options.warmup_steps
    if options.lr_decay == "cosine":
        progress = (step - options.warmup_steps) / max(1, options.steps - options.warmup_steps)
        return options.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))
    return options.lr


def _step_seed(seed: int, step: int, rank: int, micro: int) -> int:
    return ((seed * 1_000_003 + step) * 1009 + rank) * 101 + micro


def _make_optimizer(options: LoopOptions, params) -> torch.optim.Optimizer:
    if options.optimizer == "adam":
        return torch.optim.Adam(params, lr=options.lr, weight_decay=options.weight_decay)
    if options.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=options.lr, weight_decay=options.weight_decay)
    raise ValueError(f"unknown optimizer {options.optimizer!r}; use 'adam' or 'adamw'")


def train(
    stage: Stage, options: LoopOptions, *, on_step: Callable[[int], None] | None = None
) -> dict[str, Any]:
    """Run (or resume) a stage to `options.steps`; returns a summary dict (rank 0 exports)."""
    from accelerate import Accelerator

    if options.num_threads:
        torch.set_num_threads(options.num_threads)
    accelerator = Accelerator(
        mixed_precision=options.mixed_precision,
        gradient_accumulation_steps=options.grad_accum,
        cpu=not torch.cuda.is_available(),
    )
    world, rank = accelerator.num_processes, accelerator.process_index
    per_process = options.batch_size // world
    if per_process * world != options.batch_size or per_process % options.grad_accum:
        raise ValueError(
            f"batch size {options.batch_size} must split evenly over {world} processes x "
            f"{options.grad_accum} accumulation steps"
        )
    micro = per_process // options.grad_accum
    run_dir = Path(options.run_dir)
    num_items = stage.num_items()
    check_run_dir(
        run_dir,
        stage=stage.name,
        model=stage.describe()["model"],
        resume=options.resume,
        overwrite=options.overwrite,
    )
    if options.overwrite and accelerator.is_main_process and holds_run(run_dir):
        clear_run_dir(run_dir)
        print(f"--overwrite: deleted the run in {run_dir}; starting over", flush=True)
    accelerator.wait_for_everyone()

    torch.manual_seed(options.seed)  # the same initial weights on every rank
    model = stage.build()
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    optimizer = _make_optimizer(options, model.parameters())
    start_step = 0
    resume_path = resolve_resume(run_dir, options.resume)
    if resume_path is not None:
        state = load_checkpoint(resume_path)
        if state.get("stage") != stage.name:
            raise TrainingStateError(
                f"{resume_path} is a {state.get('stage')!r} checkpoint, not {stage.name!r}"
            )
        try:
            model.load_state_dict(state["model"])
            ema.load_state_dict(state["ema"])
            optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            # torch lists every mismatched tensor (hundreds of lines): keep the first one.
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise TrainingStateError(
                f"{resume_path} does not fit this model ({first}); resume with the options "
                "the run was started with, or choose another --run-dir"
            ) from None
        start_step = int(state["step"])
        if accelerator.is_main_process:
            print(
                f"resuming from {resume_path.name} (step {start_step} of {options.steps})",
                flush=True,
            )
    elif options.resume is not None and accelerator.is_main_process:
        print(f"--resume {options.resume}: no checkpoint in {run_dir} yet; starting at step 0")
    model, optimizer = accelerator.prepare(model, optimizer)
    if (
        resume_path is not None
        and state.get("scaler") is not None
        and accelerator.scaler is not None
    ):
        accelerator.scaler.load_state_dict(state["scaler"])

    resolved = {
        "stage": stage.name,
        "loop": options.to_dict(),
        "stage_options": stage.describe(),
        "processes": world,
        "per_process_batch": per_process,
        "micro_batch": micro,
        "dataset_items": num_items,
        "resumed_from": str(resume_path) if resume_path else None,
        "start_step": start_step,
    }
    writer = None
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        name = "options.json" if start_step == 0 else f"options-resume-{start_step:08d}.json"
        (run_dir / name).write_text(json.dumps(resolved, indent=2, default=str) + "\n")
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run_dir / "logs"))
    accelerator.wait_for_everyone()

    from tqdm.auto import tqdm

    progress = tqdm(
        total=options.steps,
        initial=start_step,
        disable=not accelerator.is_main_process,
        unit="step",
        dynamic_ncols=True,
    )
    started = time.perf_counter()
    losses: list[float] = []
    step = start_step
    generator = torch.Generator()

    def checkpoint(step_done: int) -> None:
        if accelerator.is_main_process:
            save_checkpoint(
                run_dir,
                step_done,
                {
                    "stage": stage.name,
                    "step": step_done,
                    "model": accelerator.unwrap_model(model).state_dict(),
                    "ema": ema.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scaler": accelerator.scaler.state_dict() if accelerator.scaler else None,
                    "data_order": {
                        "seed": options.seed,
                        "global_batch": options.batch_size,
                        "num_items": num_items,
                    },
                    "rng": {
                        "rule": "generators reseeded per (seed, step, rank, micro-batch)",
                        "seed": options.seed,
                    },
                    "torch_rng": torch.get_rng_state(),
                },
            )
        accelerator.wait_for_everyone()

    from .data import global_batch_indices

    model.train()
    # Warnings during the loop (e.g. a skipped unreadable image) on their own line above the
    # progress bar, not glued to it.
    above_bar = _TqdmLineHandler(tqdm)
    package_logger = logging.getLogger("diffae_app")
    package_logger.addHandler(above_bar)
    try:
        for step in range(start_step, options.steps):
            lr = _lr_at(options, step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            indices = global_batch_indices(num_items, step, options.batch_size, options.seed)
            mine = indices[rank * per_process : (rank + 1) * per_process]
            step_loss = 0.0
            for m in range(options.grad_accum):
                seed = _step_seed(options.seed, step, rank, m)
                generator.manual_seed(seed)
                torch.manual_seed(seed)  # dropout
                with accelerator.accumulate(model), accelerator.autocast():
                    loss = stage.loss(model, mine[m * micro : (m + 1) * micro], generator)
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and options.grad_clip > 0:
                        accelerator.clip_grad_norm_(model.parameters(), options.grad_clip)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                step_loss += loss.detach().float().item() / options.grad_accum
            ema_update(
                ema,
                accelerator.unwrap_model(model),
                ema_decay_at(step, options.ema_decay, options.ema_warmup),
            )
            step_done = step + 1
            mean_loss = accelerator.reduce(torch.tensor(step_loss), reduction="mean").item()
            losses.append(mean_loss)
            if accelerator.is_main_process:
                elapsed = time.perf_counter() - started
                rate = (step_done - start_step) * options.batch_size / max(elapsed, 1e-9)
                progress.set_postfix(loss=f"{mean_loss:.4f}", img_s=f"{rate:.1f}", lr=f"{lr:.2e}")
                progress.update(1)
                if step_done % options.log_every == 0 or step_done == options.steps:
                    writer.add_scalar("train/loss", mean_loss, step_done)
                    writer.add_scalar("train/lr", lr, step_done)
                    writer.add_scalar("train/items_per_s", rate, step_done)
                if options.sample_every and step_done % options.sample_every == 0:
                    stage.log_samples(ema, writer, step_done)
            if step_done % options.save_every == 0 or step_done == options.steps:
                checkpoint(step_done)
            if on_step is not None:
                on_step(step_done)
    finally:
        package_logger.removeHandler(above_bar)
    progress.close()

    elapsed = time.perf_counter() - started
    data_report = {
        key: int(accelerator.reduce(torch.tensor(value), reduction="sum").item())
        for key, value in (stage.data_report() if hasattr(stage, "data_report") else {}).items()
    }
    summary = {
        "stage": stage.name,
        "steps": options.steps,
        "start_step": start_step,
        "resumed_from": resume_path.name if resume_path else None,
        "processes": world,
        "seconds_this_session": round(elapsed, 1),
        "final_loss": losses[-1] if losses else None,
        "mean_loss_last_100": sum(losses[-100:]) / max(1, len(losses[-100:])) if losses else None,
        **data_report,
        "ranks_seen": accelerator.gather(torch.tensor([rank])).tolist(),
    }
    if accelerator.is_main_process:
        summary.update(stage.log_samples(ema, writer, options.steps) or {})
        writer.close()
        summary["warnings"] = quality_warnings(resolved, options.steps, summary)
        for warning in summary["warnings"]:
            print(f"warning: {warning}", file=sys.stderr, flush=True)
        export_path = stage.export(ema, run_dir, summary)
        summary["export"] = str(export_path) if export_path else None
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return summary


class _TqdmLineHandler(logging.Handler):
    """Writes log records as ``warning: ...`` lines through ``tqdm.write`` (above the bar)."""

    def __init__(self, tqdm_class: Any) -> None:
        super().__init__(level=logging.WARNING)
        self.tqdm_class = tqdm_class

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = f"{record.levelname.lower()}: {record.getMessage()}"
            self.tqdm_class.write(line, file=sys.stderr)
        except Exception:  # logging must never break training
            self.handleError(record)
