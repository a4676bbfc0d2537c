"""New sliders from examples: the semantic codes of example faces, and a direction fitted to them."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from ..align import align_face
from ..classifier import AttributeClassifier, ClassifierError
from ..editing import fit_custom_attribute
from ..errors import EditError
from ..imaging import ImageSource, image_to_tensor, load_image
from ..session import Session
from .sessions import check_session, detect, photo_hash, square_crop

if TYPE_CHECKING:
    from .facade import Studio

__all__ = ["custom_attribute", "semantic_codes"]

Example = Session | torch.Tensor | ImageSource


def semantic_codes(studio: Studio, examples: Sequence[Example], *, aligned: bool) -> torch.Tensor:
    """See :meth:`Studio.semantic_codes`."""
    width = studio.model.config.autoencoder.z_sem_channels
    codes = [_semantic_code(studio, example, width, aligned) for example in examples]
    if not codes:
        return torch.zeros(0, width)
    return torch.cat(codes)


def _semantic_code(studio: Studio, example: Example, width: int, aligned: bool) -> torch.Tensor:
    """(1, D) float32 on the CPU for one example."""
    if isinstance(example, Session):
        check_session(studio, example)
        return example.z_sem
    if isinstance(example, torch.Tensor):
        if example.numel() != width:
            raise EditError(f"a z_sem example must have {width} values, got {example.numel()}")
        return example.detach().reshape(1, width).float().cpu()
    image = load_image(example)
    if aligned:
        crop = square_crop(image, studio.image_size)
    else:
        face = detect(studio, image, photo_hash(image))[0]
        crop = align_face(image, face, studio.image_size).image
    with torch.inference_mode():
        return studio.model.encode(image_to_tensor(crop)[None]).cpu()


def custom_attribute(
    studio: Studio,
    positive: Sequence[Example],
    negative: Sequence[Example],
    name: str,
    *,
    aligned: bool,
) -> AttributeClassifier:
    """See :meth:`Studio.custom_attribute`."""
    if name in studio.attribute_names:
        raise ClassifierError(
            f"attribute name {name!r} is already one of the model's; choose another"
        )
    width = studio.model.config.autoencoder.z_sem_channels
    if studio.classifier is not None:
        z_mean, z_std = studio.classifier.z_mean, studio.classifier.z_std
    elif studio.model.z_mean is not None:
        z_mean, z_std = studio.model.z_mean.cpu(), studio.model.z_std.cpu()
    else:
        z_mean, z_std = torch.zeros(width), torch.ones(width)
    fitted = fit_custom_attribute(
        semantic_codes(studio, positive, aligned=aligned),
        semantic_codes(studio, negative, aligned=aligned),
        name,
        z_mean=z_mean,
        z_std=z_std,
    )
    return dataclasses.replace(fitted, model_fingerprint=studio.fit_fingerprint)
