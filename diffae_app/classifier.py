"""Linear attribute classifiers on normalised z_sem, and their safetensors artefact.

An artefact is one `.safetensors` file: `weight` (A, D), `bias` (A,), `z_mean` (D,), `z_std`
(D,), optionally `direction` (A, D) edit directions, plus a metadata header with the attribute
names (the only source of slider names), optional per-attribute metrics and, for standalone
artefacts, the fingerprint of the model they were fitted to. Logits are
weight @ ((z - z_mean) / z_std) + bias, as the official ClsModel computes them.

Standalone artefacts (not part of a model bundle) live in the repository's top-level
``classifiers/`` folder (:func:`classifiers_dir`; ``DIFFAE_CLASSIFIERS`` moves it): custom
attributes saved by the CLI, the official CelebA-HQ classifier placed there by ``convert``.
:func:`find_classifiers` lists the ones that fit a model, by that fingerprint.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

FORMAT = "diffae-studio-classifier"

#: The repository's folder of standalone classifier artefacts.
CLASSIFIERS_DIR = Path(__file__).resolve().parents[1] / "classifiers"


def classifiers_dir() -> Path:
    """Where standalone artefacts are saved and looked for: ``$DIFFAE_CLASSIFIERS``, else
    :data:`CLASSIFIERS_DIR`."""
    return Path(os.environ.get("DIFFAE_CLASSIFIERS") or CLASSIFIERS_DIR)


def artefact_name(attribute: str, fingerprint: str) -> str:
    """File name of a standalone artefact: ``<attribute>-<model fingerprint>.safetensors``."""
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in attribute)[:64]
    return f"{safe or 'attribute'}-{fingerprint or 'any'}.safetensors"


def read_header(path: str | Path) -> dict[str, str] | None:
    """The metadata of a classifier artefact without reading its tensors; None when the file
    is not one."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception:  # safetensors raises several types for a bad header
        return None
    return meta if meta.get("format") == FORMAT else None


def find_classifiers(fingerprint: str, folder: str | Path | None = None) -> list[Path]:
    """Artefacts in ``folder`` (default :func:`classifiers_dir`) fitted to the model with this
    fingerprint (``Studio.fit_fingerprint``), by file name."""
    folder = Path(folder) if folder is not None else classifiers_dir()
    if not fingerprint or not folder.is_dir():
        return []
    return [
        path
        for path in sorted(folder.glob("*.safetensors"))
        if (read_header(path) or {}).get("model_fingerprint") == fingerprint
    ]


# CelebA attribute order of the official classifier rows (CelebAttrDataset.id_to_cls).
CELEBA_ATTRIBUTES: tuple[str, ...] = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs",
    "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair",
    "Bushy_Eyebrows", "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair",
    "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache",
    "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline",
    "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings",
    "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
)  # fmt: skip


class ClassifierError(ValueError):
    """A classifier artefact is missing, malformed or does not fit the model."""


@dataclass(frozen=True)
class AttributeClassifier:
    """A (A, D) linear classifier on z_sem normalised by (z_mean, z_std)."""

    attribute_names: tuple[str, ...]
    weight: torch.Tensor  # (A, D) float32
    bias: torch.Tensor  # (A,) float32
    z_mean: torch.Tensor  # (D,) float32
    z_std: torch.Tensor  # (D,) float32
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    source: str = ""
    # (A, D) float32 edit directions in normalised z_sem space, or None: the sliders then move
    # along the classifier rows (the official recipe). train/classifiers.py stores the class-mean
    # differences here, which move a decoder that reads z_sem weakly far better than the rows.
    directions: torch.Tensor | None = None
    # Studio.fit_fingerprint of the model this was fitted to ("" = not recorded, e.g. a
    # bundle's own classifier, which travels with its model anyway).
    model_fingerprint: str = ""

    def __post_init__(self) -> None:
        a, d = self.weight.shape
        if len(self.attribute_names) != a:
            raise ClassifierError(f"{len(self.attribute_names)} names for {a} classifier rows")
        if len(set(self.attribute_names)) != a:
            raise ClassifierError("attribute names must be unique")
        if self.bias.shape != (a,) or self.z_mean.shape != (d,) or self.z_std.shape != (d,):
            raise ClassifierError(
                f"inconsistent classifier shapes: weight {tuple(self.weight.shape)}, bias "
                f"{tuple(self.bias.shape)}, z_mean {tuple(self.z_mean.shape)}, z_std {tuple(self.z_std.shape)}"
            )
        if self.directions is not None and self.directions.shape != (a, d):
            raise ClassifierError(
                f"edit directions {tuple(self.directions.shape)} do not match weight {(a, d)}"
            )

    @property
    def z_sem_channels(self) -> int:
        return self.weight.shape[1]

    def index(self, name: str) -> int:
        try:
            return self.attribute_names.index(name)
        except ValueError:
            raise ClassifierError(
                f"unknown attribute {name!r}; this classifier knows: {', '.join(self.attribute_names)}"
            ) from None

    def normalize(self, z_sem: torch.Tensor) -> torch.Tensor:
        return (z_sem - self.z_mean.to(z_sem)) / self.z_std.to(z_sem)

    def denormalize(self, z_norm: torch.Tensor) -> torch.Tensor:
        return z_norm * self.z_std.to(z_norm) + self.z_mean.to(z_norm)

    def logits(self, z_sem: torch.Tensor) -> torch.Tensor:
        """(B, D) z_sem -> (B, A) logits."""
        return self.normalize(z_sem) @ self.weight.to(z_sem).T + self.bias.to(z_sem)

    def probabilities(self, z_sem: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(z_sem))

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {
            "weight": self.weight.float().contiguous(),
            "bias": self.bias.float().contiguous(),
            "z_mean": self.z_mean.float().contiguous(),
            "z_std": self.z_std.float().contiguous(),
        }
        if self.directions is not None:
            tensors["direction"] = self.directions.float().contiguous()
        metadata = {
            "format": FORMAT,
            "attribute_names": json.dumps(list(self.attribute_names)),
            "metrics": json.dumps(self.metrics),
            "source": self.source,
        }
        if self.model_fingerprint:
            metadata["model_fingerprint"] = self.model_fingerprint
        save_file(tensors, str(path), metadata=metadata)
        return path

    @classmethod
    def load(cls, path: str | Path) -> AttributeClassifier:
        path = Path(path)
        if not path.is_file():
            raise ClassifierError(f"classifier file {path} does not exist")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        except Exception as exc:  # safetensors raises several types for a bad header
            raise ClassifierError(f"{path} is not a readable safetensors file: {exc}") from None
        if meta.get("format") != FORMAT:
            raise ClassifierError(f"{path} is not a DiffAE Studio classifier artefact")
        missing = {"weight", "bias", "z_mean", "z_std"} - set(tensors)
        if missing:
            raise ClassifierError(f"{path} lacks tensors {sorted(missing)}")
        return cls(
            attribute_names=tuple(json.loads(meta["attribute_names"])),
            weight=tensors["weight"].float(),
            bias=tensors["bias"].float(),
            z_mean=tensors["z_mean"].float(),
            z_std=tensors["z_std"].float(),
            metrics=json.loads(meta.get("metrics") or "{}"),
            source=meta.get("source", ""),
            directions=tensors["direction"].float() if "direction" in tensors else None,
            model_fingerprint=meta.get("model_fingerprint", ""),
        )
