"""Which device, which precision, which weights: turning a model spec into a loaded DiffAE.

The only place that decides the device and the precision (see :meth:`Studio.load`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch

from ..checkpoints import CheckpointError
from ..classifier import AttributeClassifier, ClassifierError
from ..diffae import DiffAE
from ..editing import merge_classifiers
from ..errors import StudioError
from ..precision import MIN_BF16_PSNR_DB, PrecisionChoice, fidelity_db, native_bf16
from ..reliability import EditReliability, ReliabilityError, read_edit_reliability

__all__ = [
    "DEFAULT_MODEL_DIR",
    "bundle_edit_reliability",
    "choose_device",
    "load_auto_precision",
    "load_model",
    "pick_classifier",
]

#: Where ``Studio.load("default")`` looks for the bundled SynthFaces-64 model.
DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[2] / "assets" / "models" / "synthfaces64"

_OFFICIAL_SUFFIXES = (".ckpt", ".pt", ".pth")


def choose_device(device: str | torch.device = "auto") -> torch.device:
    """ "auto": CUDA if available, else Apple MPS, else CPU; otherwise the named device.

    Raises:
        StudioError: an unknown device name or one that is not available here.
    """
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError):
        raise StudioError(
            f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps"
        ) from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise StudioError(f"device {device!r} requested but CUDA is not available here; use cpu")
    if chosen.type == "mps" and not torch.backends.mps.is_available():
        raise StudioError(f"device {device!r} requested but MPS is not available here; use cpu")
    return chosen


def load_model(
    spec: str | os.PathLike, *, revision: str | None, device: torch.device, precision: str
) -> tuple[DiffAE, str]:
    """(model, model id) for a model spec; see :meth:`Studio.load`."""
    from ..convert import find_official_checkpoints

    if str(spec) == "default":
        if not (DEFAULT_MODEL_DIR / "config.json").is_file():
            raise CheckpointError(
                f"the bundled model is not installed at {DEFAULT_MODEL_DIR}; pass a bundle "
                "folder, a Hub repo id or an official checkpoint as the model"
            )
        spec = DEFAULT_MODEL_DIR
    path = Path(spec)
    if path.is_file() or (path.is_dir() and not (path / "config.json").is_file()):
        if path.is_file() and path.suffix not in _OFFICIAL_SUFFIXES:
            raise CheckpointError(
                f"{path}: not a model; pass a bundle folder, a Hub repo id, or an official "
                "checkpoint (.ckpt file or checkpoints/ folder)"
            )
        checkpoint, classifier = find_official_checkpoints(path)
        model = DiffAE.from_official(
            checkpoint, classifier=classifier, device=device, precision=precision
        )
        return model, model.config.name
    model = DiffAE.from_pretrained(spec, revision=revision, device=device, precision=precision)
    model_id = model.config.name if path.exists() else str(spec)
    return model, model_id


def load_auto_precision(
    spec: str | os.PathLike, *, revision: str | None, device: torch.device
) -> tuple[DiffAE, str, PrecisionChoice]:
    """Load in float32, convert to bf16 where the hardware has it; keep bf16 if it is faithful."""
    model, model_id = load_model(spec, revision=revision, device=device, precision="float32")
    hardware = native_bf16(device)
    if hardware is None:
        return model, model_id, PrecisionChoice("float32", f"float32: no native bf16 on {device}")
    fast = model.with_precision("bfloat16")
    agreement = fidelity_db(model, fast)
    if agreement >= MIN_BF16_PSNR_DB:
        reason = f"bfloat16: {hardware} runs it natively; renders agree with float32 at "
        return fast, model_id, PrecisionChoice("bfloat16", f"{reason}{agreement:.1f} dB", agreement)
    reason = f"float32: bf16 renders agree with float32 at only {agreement:.1f} dB"
    return (
        model,
        model_id,
        PrecisionChoice("float32", f"{reason} (< {MIN_BF16_PSNR_DB:g})", agreement),
    )


def bundle_edit_reliability(source: str) -> dict[str, EditReliability]:
    """The edit measurements of a bundle folder; none for other sources or a bad file (warned:
    the model itself is fine, only the claims about it are missing)."""
    if not source or not Path(source).is_dir():
        return {}
    try:
        return read_edit_reliability(source)
    except ReliabilityError as exc:
        warnings.warn(f"edit reliability not shown: {exc}", stacklevel=3)
        return {}


def pick_classifier(
    classifiers: Mapping[str, AttributeClassifier], name: str | None
) -> AttributeClassifier | None:
    """The classifier artefact ``name`` of a model, or all of them merged in name order."""
    if name is not None:
        if name not in classifiers:
            known = ", ".join(sorted(classifiers)) or "none"
            raise ClassifierError(f"the model has no classifier {name!r} (it has: {known})")
        return classifiers[name]
    if not classifiers:
        return None
    names = sorted(classifiers)
    try:
        return merge_classifiers(*(classifiers[n] for n in names))
    except ClassifierError as exc:
        raise ClassifierError(f"{exc}; choose one classifier by name") from None
