"""Plain data the studio hands out and takes back: sessions, recipes, results.

Nothing here holds a model or touches a device: a :class:`Session` is what a UI keeps per user
(e.g. in ``gr.State``) and a :class:`Recipe` is what a user saves to replay an edit. The
errors the studio raises live in :mod:`diffae_app.errors`.
"""

from __future__ import annotations

import base64
import json
import math
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from .align import AlignedFace
from .classifier import AttributeClassifier, ClassifierError
from .errors import RecipeError
from .paste import DEFAULT_PASTE, PASTE_MODES

__all__ = [
    "DEFAULT_QUALITY",
    "QUALITY_PRESETS",
    "RECIPE_FORMAT",
    "EditResult",
    "ProgressCallback",
    "QualityPreset",
    "Recipe",
    "Session",
    "custom_attribute_from_dict",
    "custom_attribute_to_dict",
]

#: ``progress(step, total, message)``: ``step`` counts completed units of work out of
#: ``total`` (0 < step <= total; ``total`` is fixed for one call), ``message`` says what runs
#: now (e.g. "inverting (DDIM)"). Called from the worker thread; keep it cheap.
ProgressCallback = Callable[[int, int, str], None]


# --------------------------------------------------------------------------- quality presets


@dataclass(frozen=True)
class QualityPreset:
    """DDIM step counts: ``T_inv`` for the inversion that makes x_T, ``T_render`` per render.

    Inversion runs once per upload (cached); rendering runs on every slider release.
    """

    T_inv: int
    T_render: int

    def __post_init__(self) -> None:
        if self.T_inv < 1 or self.T_render < 1:
            raise ValueError(f"step counts must be >= 1, got {self.T_inv}, {self.T_render}")


#: Named step counts, chosen from `benchmarks/fidelity_study.py --solvers` on the bundled model
#: (bf16, its power-1.25 spacing and extrapolated inversion: one UNet call per inversion step,
#: so upload -> first image costs T_inv + T_render calls and a slider move T_render). Equal
#: counts reconstruct best, because each render step then undoes one inversion step. Held-out
#: faces / real portraits: 10/10 34.6 / 37.5 dB (20 + 10 calls); 16/16 40.7 / 43.4 dB (32 + 16
#: calls, within 0.3 dB of the former default, fixed-point inversion at 20/20 with 58 + 20
#: calls); 20/20 43.9 / 45.0 dB. benchmarks/RESULTS.md has the table.
QUALITY_PRESETS: Mapping[str, QualityPreset] = types.MappingProxyType(
    {
        "preview": QualityPreset(T_inv=10, T_render=10),
        "balanced": QualityPreset(T_inv=16, T_render=16),
        "best": QualityPreset(T_inv=50, T_render=50),
    }
)
DEFAULT_QUALITY = "balanced"


# --------------------------------------------------------------------------- session


@dataclass(frozen=True, eq=False)
class Session:
    """One encoded face: everything needed to render edits of it, on the CPU, no model inside.

    Attributes:
        kind: "photo" (detected and aligned in a photo), "aligned" (an already-aligned crop),
            "sample" (drawn from the latent DPM) or "imported" (from an exported encoding).
        photo: the upright RGB photo edits are pasted back into; for "aligned", the input
            picture at its own size (edits are upsampled to it); for the other kinds, the crop.
        photo_hash: sha256 hex of the photo's size and RGB pixels (identity for caching).
        face_index: which detected face (best first), 0 for the other kinds.
        num_faces: faces found in the photo (1 for the other kinds).
        aligned: the alignment (crop <-> photo transforms) for "photo" sessions, else None.
        crop: the model-sized aligned face that was encoded (S × S RGB).
        z_sem: (1, D) float32 semantic code.
        x_T: (1, 3, S, S) float32 stochastic code (DDIM inversion of the crop, or the noise a
            sample was drawn from).
        T_inv: inversion steps x_T was made with (0 for samples: no inversion).
        model_id: name of the model that encoded it.
        model_revision: fingerprint of that model's weights.
    """

    kind: str
    photo: Image.Image
    photo_hash: str
    face_index: int
    num_faces: int
    aligned: AlignedFace | None
    crop: Image.Image
    z_sem: torch.Tensor
    x_T: torch.Tensor
    T_inv: int
    model_id: str
    model_revision: str

    def __post_init__(self) -> None:
        if self.kind not in ("photo", "aligned", "sample", "imported"):
            raise ValueError(f"unknown session kind {self.kind!r}")
        if self.z_sem.dim() != 2 or self.z_sem.shape[0] != 1:
            raise ValueError(f"z_sem must be (1, D), got {tuple(self.z_sem.shape)}")
        if self.x_T.dim() != 4 or self.x_T.shape[:2] != (1, 3):
            raise ValueError(f"x_T must be (1, 3, S, S), got {tuple(self.x_T.shape)}")
        # Sessions live in per-user UI state: keep them on the CPU and detached. The copy is
        # also freshly allocated (64-byte aligned): CPU kernels may pick other vector paths for
        # unaligned buffers (a tensor read from a file), which changes the last bits of a render.
        for name in ("z_sem", "x_T"):
            tensor = getattr(self, name).detach().to("cpu", torch.float32)
            object.__setattr__(self, name, tensor.clone(memory_format=torch.contiguous_format))

    @property
    def photo_size(self) -> tuple[int, int]:
        """(width, height) of :attr:`photo`."""
        return self.photo.size

    @property
    def image_size(self) -> int:
        """Side S of the model's images."""
        return int(self.x_T.shape[-1])


# --------------------------------------------------------------------------- recipe

RECIPE_FORMAT = "diffae-studio-recipe"
RECIPE_VERSION = 1


def _float_map(values: Mapping[str, float] | None, what: str) -> Mapping[str, float]:
    result: dict[str, float] = {}
    for name, value in (values or {}).items():
        if not isinstance(name, str):
            raise RecipeError(f"{what} keys must be attribute names, got {name!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise RecipeError(f"{what} of {name!r} must be a number, got {value!r}") from None
        if not math.isfinite(number):
            raise RecipeError(f"{what} of {name!r} must be finite, got {value!r}")
        result[name] = number
    return types.MappingProxyType(result)


@dataclass(frozen=True)
class Recipe:
    """Everything that decides an edit's output, as a small JSON document.

    Applying it to the same photo with the same model reproduces the output bit for bit on
    the same machine.

    Attributes:
        model_id, model_revision: the model (name and weight fingerprint) it was made with.
        T_inv, T_render: DDIM steps of the inversion and of the render.
        strengths: attribute -> strength (official units).
        locks: attributes held fixed.
        targets: attribute -> target probability (solved at apply time).
        seed: None to render from the inverted x_T (faithful); an int to render from fresh
            noise of that seed instead (a stochastic variation of the same face).
        face_index: which detected face of the photo (best first).
        custom_attributes: name -> custom attribute used by the edit (its weights, see
            :func:`custom_attribute_to_dict`), so the recipe stands alone.
        paste: paste-back mode, "change" or "render" (see :mod:`diffae_app.paste`); recipes
            written before it existed read as "change", the default.
    """

    model_id: str
    model_revision: str
    T_inv: int
    T_render: int
    strengths: Mapping[str, float] = field(default_factory=dict)
    locks: tuple[str, ...] = ()
    targets: Mapping[str, float] = field(default_factory=dict)
    seed: int | None = None
    face_index: int = 0
    custom_attributes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    paste: str = DEFAULT_PASTE

    def __post_init__(self) -> None:
        if self.paste not in PASTE_MODES:
            raise RecipeError(
                f"recipe paste must be one of {', '.join(PASTE_MODES)}, got {self.paste!r}"
            )
        object.__setattr__(self, "strengths", _float_map(self.strengths, "strength"))
        object.__setattr__(self, "targets", _float_map(self.targets, "target"))
        object.__setattr__(self, "locks", tuple(str(n) for n in self.locks))
        object.__setattr__(
            self, "custom_attributes", types.MappingProxyType(dict(self.custom_attributes))
        )
        for name, value, least in (("T_inv", self.T_inv, 0), ("T_render", self.T_render, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise RecipeError(f"recipe {name} must be an integer >= {least}, got {value!r}")
        if not isinstance(self.face_index, int) or self.face_index < 0:
            raise RecipeError(f"recipe face_index must be >= 0, got {self.face_index!r}")
        if self.seed is not None and (not isinstance(self.seed, int) or self.seed < 0):
            raise RecipeError(
                f"recipe seed must be a non-negative integer or null, got {self.seed!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": RECIPE_FORMAT,
            "version": RECIPE_VERSION,
            "model_id": self.model_id,
            "model_revision": self.model_revision,
            "T_inv": self.T_inv,
            "T_render": self.T_render,
            "strengths": dict(self.strengths),
            "locks": list(self.locks),
            "targets": dict(self.targets),
            "seed": self.seed,
            "face_index": self.face_index,
            "custom_attributes": {k: dict(v) for k, v in self.custom_attributes.items()},
            "paste": self.paste,
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        """JSON text; floats are written with full precision (repr), so replays are exact."""
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Recipe:
        if not isinstance(data, Mapping) or data.get("format") != RECIPE_FORMAT:
            raise RecipeError("not a DiffAE Studio recipe (its 'format' field is missing or wrong)")
        if data.get("version") != RECIPE_VERSION:
            raise RecipeError(
                f"recipe version {data.get('version')!r} is not supported (expected {RECIPE_VERSION})"
            )
        known = {
            "model_id",
            "model_revision",
            "T_inv",
            "T_render",
            "strengths",
            "locks",
            "targets",
            "seed",
            "face_index",
            "custom_attributes",
            "paste",
        }
        unknown = sorted(set(data) - known - {"format", "version"})
        if unknown:
            raise RecipeError(f"recipe has unknown fields: {', '.join(unknown)}")
        missing = sorted({"model_id", "model_revision", "T_inv", "T_render"} - set(data))
        if missing:
            raise RecipeError(f"recipe lacks fields: {', '.join(missing)}")
        values = {k: data[k] for k in known if k in data}
        for key in ("strengths", "targets", "custom_attributes"):
            if key in values and not isinstance(values[key], Mapping):
                raise RecipeError(f"recipe field {key!r} must be an object")
        if "locks" in values and (
            not isinstance(values["locks"], Sequence) or isinstance(values["locks"], str)
        ):
            raise RecipeError("recipe field 'locks' must be a list of attribute names")
        try:
            return cls(**values)
        except TypeError as exc:
            raise RecipeError(f"malformed recipe: {exc}") from None

    @classmethod
    def from_json(cls, text: str | bytes) -> Recipe:
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RecipeError(f"recipe is not valid JSON: {exc}") from None
        return cls.from_dict(data)


def _tensor_to_text(tensor: torch.Tensor) -> str:
    return base64.b64encode(tensor.detach().float().cpu().contiguous().numpy().tobytes()).decode()


def _text_to_tensor(text: Any, width: int | None, what: str) -> torch.Tensor:
    try:
        data = base64.b64decode(str(text).encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        raise RecipeError(f"{what} in the recipe is not valid base64") from None
    if len(data) % 4 or (width is not None and len(data) != 4 * width):
        raise RecipeError(f"{what} in the recipe has the wrong length")
    return torch.frombuffer(bytearray(data), dtype=torch.float32).clone()


def custom_attribute_to_dict(classifier: AttributeClassifier) -> dict[str, Any]:
    """A one-row custom attribute as JSON-ready data (float32 tensors in base64, exact)."""
    if len(classifier.attribute_names) != 1:
        raise ValueError("only one-attribute classifiers go into a recipe")
    return {
        "weight": _tensor_to_text(classifier.weight[0]),
        "bias": float(classifier.bias[0]),
        "z_mean": _tensor_to_text(classifier.z_mean),
        "z_std": _tensor_to_text(classifier.z_std),
    }


def custom_attribute_from_dict(name: str, data: Mapping[str, Any]) -> AttributeClassifier:
    """Inverse of :func:`custom_attribute_to_dict`."""
    if not isinstance(data, Mapping) or not {"weight", "bias", "z_mean", "z_std"} <= set(data):
        raise RecipeError(f"custom attribute {name!r} in the recipe is incomplete")
    weight = _text_to_tensor(data["weight"], None, f"custom attribute {name!r}")
    width = weight.numel()
    try:
        bias = torch.tensor([float(data["bias"])], dtype=torch.float32)
    except (TypeError, ValueError):
        raise RecipeError(f"custom attribute {name!r} has a bad bias") from None
    try:
        return AttributeClassifier(
            attribute_names=(name,),
            weight=weight.reshape(1, width),
            bias=bias,
            z_mean=_text_to_tensor(data["z_mean"], width, f"custom attribute {name!r}"),
            z_std=_text_to_tensor(data["z_std"], width, f"custom attribute {name!r}"),
            source="custom attribute from a recipe",
        )
    except ClassifierError as exc:
        raise RecipeError(f"custom attribute {name!r} in the recipe: {exc}") from None


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, eq=False)
class EditResult:
    """What one render returns.

    Attributes:
        crop: the model's edited render of the aligned face, S × S RGB.
        photo: the full photo with the edit pasted back in the ``paste`` mode (original size,
            upright); for an aligned input, that picture at its own size; for random and
            imported faces, the crop (plus the change in "change" mode).
        mask: "L" image of the photo's size: 0 where ``photo`` equals the input pixel for
            pixel, 255 where it is the edited face; None when there was no paste-back.
        face_crop: the edited aligned face as shown and downloaded: in "render" mode the same
            as ``crop``; in "change" mode cut from ``photo`` at the face's own resolution (up
            to 1024 px; for an aligned input, ``photo`` itself).
        paste: the paste-back mode used, "change" or "render".
        z_sem: (1, D) float32 edited semantic code.
        strengths: the strengths applied, target attributes included (as solved).
        probabilities_before: attribute -> classifier probability of the session's z_sem
            (the encoded input face).
        probabilities_after: what the result shows: the rendered crop encoded again and
            classified (one encoder pass). This, not the code, is the honest "after".
        recipe: replays this edit (see :meth:`Studio.apply_recipe`).
        probabilities_asked: the classifier on the edited z_sem: what the edit asked for. It
            differs from ``probabilities_after`` where the decoder did not carry a direction
            through (then the picture does not show what was asked).
        corrected: target mode took one corrective step, because the first render's measured
            probabilities missed a target by more than ``editing.TARGET_LANDING``.
    """

    crop: Image.Image
    photo: Image.Image
    mask: Image.Image | None
    z_sem: torch.Tensor
    strengths: Mapping[str, float]
    probabilities_before: Mapping[str, float]
    probabilities_after: Mapping[str, float]
    recipe: Recipe
    probabilities_asked: Mapping[str, float] = field(default_factory=dict)
    corrected: bool = False
    face_crop: Image.Image | None = None
    paste: str = DEFAULT_PASTE

    def __post_init__(self) -> None:
        if self.face_crop is None:
            object.__setattr__(self, "face_crop", self.crop)
