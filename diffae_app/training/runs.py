"""Run folders: what one holds, when a command may write into it, and what its results say.

A run folder (``--run-dir``) belongs to one run: ``options.json`` records the stage, the model
config and the options; ``checkpoints/``, ``logs/``, ``summary.json`` and ``bundle/`` follow.
Starting another run there would mix two runs' files (and an export would combine one's
checkpoint with the other's config), so a command refuses a folder that holds a run unless
it resumes that very run (``--resume``) or clears it (``--overwrite``).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

from ..config import ModelConfig
from .state import TrainingStateError, list_checkpoints

#: What a run writes into its folder; ``--overwrite`` deletes these and nothing else.
RUN_ENTRIES = ("options.json", "summary.json", "checkpoints", "logs", "bundle")
RESUME_OPTIONS_GLOB = "options-resume-*.json"

#: Export warns when more than this share of the EMA weights is still the random start.
EMA_INIT_SHARE_LIMIT = 0.05
#: ...or when the reconstruction logged at the end of an autoencoder run is below this.
RECON_PSNR_LIMIT_DB = 20.0


def holds_run(run_dir: Path) -> bool:
    """Whether ``run_dir`` already holds (part of) a training run."""
    return (run_dir / "options.json").is_file() or bool(list_checkpoints(run_dir))


def _recorded_options(run_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((run_dir / "options.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _describe(run_dir: Path, recorded: dict[str, Any] | None) -> str:
    found = list_checkpoints(run_dir)
    parts = []
    if recorded is not None:
        model = recorded.get("stage_options", {}).get("model", {})
        stage = str(recorded.get("stage", "?"))
        article = "an" if stage[:1] in "aeiou" else "a"
        parts.append(f"{article} {stage} run of {model.get('name', '?')}")
    else:
        parts.append("a run")
    if found:
        steps = (recorded or {}).get("loop", {}).get("steps", "?")
        parts.append(f"at {found[-1].name} of {steps} steps")
    else:
        parts.append("with no checkpoint yet")
    return " ".join(parts)


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Leaf-level differences of two JSON-like values, as ``key: old -> new``."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            out += _differences(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    if isinstance(old, list | tuple) and isinstance(new, list | tuple):
        old, new = list(old), list(new)
    if old != new:
        return [f"{prefix.rstrip('.')}: {old} -> {new}"]
    return []


# Model-config fields that only choose how a trained model samples: changing them between
# a run's sessions changes nothing that was trained, so a resume may carry the new values.
_INFERENCE_ONLY_FIELDS = ("sampler.", "default_render_steps:", "default_latent_steps:")


def _with_defaults(recorded_model: Any) -> Any:
    """The recorded model config with the fields an older version did not record filled in.

    A field added to ``ModelConfig`` later carries the default that reproduces the older
    behaviour, so a run started before it existed resumes as the same model (issue 20: an
    upgrade must not strand an interrupted run). A record that does not parse is compared raw.
    """
    if not isinstance(recorded_model, dict):
        return recorded_model
    try:
        filled = ModelConfig.from_dict(recorded_model).to_dict()
    except (TypeError, ValueError, KeyError):
        return recorded_model
    return json.loads(json.dumps(filled, default=str))


def check_run_dir(
    run_dir: Path, *, stage: str, model: dict[str, Any], resume: str | None, overwrite: bool
) -> None:
    """Refuse to start in a folder that holds another run (see the module docstring).

    Args:
        stage: the stage about to run ("autoencoder", "latent_dpm").
        model: its model config (``ModelConfig.to_dict()``), compared with the recorded one
            on a resume, so a resume with another architecture stops here in one line.

    Raises:
        TrainingStateError: the folder holds a run and the command neither resumes it
            (with the same stage and model) nor asks to overwrite it.
    """
    if overwrite and resume is not None:
        raise TrainingStateError("--overwrite starts over and --resume continues: give one")
    if overwrite or not holds_run(run_dir):
        return
    recorded = _recorded_options(run_dir)
    what = _describe(run_dir, recorded)
    if resume is None:
        raise TrainingStateError(
            f"{run_dir} already holds {what}; continue it with --resume latest, choose another "
            "--run-dir, or pass --overwrite to delete it and start over"
        )
    if recorded is None:
        return  # checkpoints without options.json: the checkpoint's own checks decide
    if recorded.get("stage") != stage:
        raise TrainingStateError(
            f"{run_dir} holds {what}, not a {stage} run; choose another --run-dir (or "
            "--overwrite without --resume)"
        )
    # Through JSON, as options.json was written: tuples become lists, numbers stay numbers.
    model = json.loads(json.dumps(model, default=str))
    recorded_model = _with_defaults(recorded.get("stage_options", {}).get("model"))
    changed = [
        line
        for line in _differences(recorded_model, model)
        if not line.startswith(_INFERENCE_ONLY_FIELDS)
    ]
    if changed:
        shown = "; ".join(changed[:4]) + (f"; {len(changed) - 4} more" if len(changed) > 4 else "")
        raise TrainingStateError(
            f"cannot resume {what} with another model ({shown}); resume with the run's own "
            "--preset/--config/--latent-* options, choose another --run-dir, or pass "
            "--overwrite (without --resume) to start over"
        )


def clear_run_dir(run_dir: Path) -> None:
    """Delete what a run wrote into ``run_dir`` (``--overwrite``); other files stay."""
    for name in RUN_ENTRIES:
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    for path in run_dir.glob(RESUME_OPTIONS_GLOB):
        path.unlink()


# --------------------------------------------------------------------------- result checks


def ema_initial_share(steps: int, max_decay: float, warmup: bool) -> float:
    """Share of the EMA weights that is still the initial (random) weights after ``steps``.

    The EMA is ``e_s = d_s e_{s-1} + (1 - d_s) w_s`` from ``e_0 = w_0``, so the initial
    weights keep the product of the decays: 0.9999^60 = 0.994 after 60 steps without a
    warm-up, (1/10)(2/11)...((s)/(s+9)) ~ 0 with one (see ``state.ema_decay_at``).
    """
    from .state import ema_decay_at

    log_share = 0.0
    for step in range(steps):
        log_share += math.log(ema_decay_at(step, max_decay, warmup))
        if log_share < -50:
            return 0.0
    return math.exp(log_share)


def quality_warnings(options: dict[str, Any], step: int, summary: dict[str, Any]) -> list[str]:
    """Why an export at ``step`` of the run described by ``options`` (its options.json) may
    be useless: EMA weights still near their random start, or a poor logged reconstruction."""
    loop = options.get("loop", {})
    out = []
    decay = float(loop.get("ema_decay", 0.0))
    warmup = bool(loop.get("ema_warmup", False))
    share = ema_initial_share(step, decay, warmup)
    if share > EMA_INIT_SHARE_LIMIT:
        out.append(
            f"the EMA weights are still {share:.0%} their random initialisation after {step} "
            f"steps of decay {decay}{'' if warmup else ' without warm-up'}: the bundle will "
            "render noise; train longer, keep the EMA warm-up on (the default) or lower "
            "--ema-decay"
        )
    psnr = summary.get("recon_psnr_T20")
    if psnr is not None and psnr < RECON_PSNR_LIMIT_DB:
        out.append(
            f"the reconstruction logged at step {summary.get('steps', step)} is only "
            f"{psnr:.1f} dB (EMA weights, 20 DDIM steps, 8 training images; a usable model "
            f"reaches {RECON_PSNR_LIMIT_DB:.0f}+): the bundle will reconstruct poorly"
        )
    return out
