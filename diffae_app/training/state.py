"""Resumable training state: atomic writes, safe reads, and the EMA update.

A training checkpoint holds everything needed to continue bit-exactly: online weights,
EMA weights, optimiser state, the step counter, and the RNG states. Files are written to a
temporary name, flushed to disk and renamed, so a crash mid-write never leaves a truncated
checkpoint under the real name; the previous checkpoint is kept until the new one exists.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

CHECKPOINT_PATTERN = re.compile(r"^state-(\d{8})\.pt$")
KEEP_CHECKPOINTS = 2


class TrainingStateError(ValueError):
    """A training checkpoint cannot be used to resume."""


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"state-{step:08d}.pt"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoints of a run, oldest first."""
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return []
    found = [
        (int(m.group(1)), p) for p in folder.iterdir() if (m := CHECKPOINT_PATTERN.match(p.name))
    ]
    return [p for _, p in sorted(found)]


def save_atomic(state: dict[str, Any], path: Path) -> None:
    """torch.save to `path` via a temporary file + fsync + rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_checkpoint(run_dir: Path, step: int, state: dict[str, Any]) -> Path:
    """Write the step's checkpoint, then prune all but the newest KEEP_CHECKPOINTS."""
    path = checkpoint_path(run_dir, step)
    save_atomic(state, path)
    for old in list_checkpoints(run_dir)[:-KEEP_CHECKPOINTS]:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a training checkpoint (tensors and plain Python values only; nothing executes)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError/EOFError/UnpicklingError for bad files
        others = [p for p in list_checkpoints(path.parent.parent) if p != path]
        hint = f"; the previous checkpoint {others[-1]} is intact, resume from it" if others else ""
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise TrainingStateError(f"{path} is truncated or corrupt ({first}){hint}") from None
    if not isinstance(state, dict) or "step" not in state:
        raise TrainingStateError(f"{path} is not a DiffAE Studio training checkpoint")
    return state


def resolve_resume(run_dir: Path, resume: str | None) -> Path | None:
    """The checkpoint to resume from: None, 'latest' (newest in run_dir) or an explicit path."""
    if resume is None:
        return None
    if resume == "latest":
        found = list_checkpoints(run_dir)
        return found[-1] if found else None
    path = Path(resume)
    if not path.is_file():
        raise TrainingStateError(f"--resume {resume}: no such checkpoint file")
    return path


def rng_state(generator: torch.Generator) -> dict[str, torch.Tensor]:
    return {"torch": torch.get_rng_state(), "generator": generator.get_state()}


def restore_rng(state: dict[str, torch.Tensor], generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])


@torch.no_grad()
def ema_update(ema: nn.Module, online: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * online, parameters and buffers alike."""
    ema_params = list(ema.parameters())
    online_params = list(online.parameters())
    torch._foreach_lerp_(ema_params, online_params, 1.0 - decay)
    for e, o in zip(ema.buffers(), online.buffers(), strict=True):
        e.copy_(o)


def ema_decay_at(step: int, max_decay: float, warmup: bool = True) -> float:
    """EMA decay for a given step: (1 + step) / (10 + step), capped at max_decay.

    Without a warm-up a 0.9999 EMA of a short run is mostly its random initialisation.
    """
    if not warmup:
        return max_decay
    return min(max_decay, (1 + step) / (10 + step))


def count_parameters(parameters: Iterable[torch.Tensor]) -> int:
    return sum(p.numel() for p in parameters)
