"""Exported encodings: a session's z_sem, x_T and crop in a safetensors file (no photo).

Re-importing one renders identically (crops; there is no paste-back without the photo). The
file records the model it belongs to, so another model refuses it with a one-line error.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

from ..errors import EncodingError
from ..safetensors_io import read_safetensors
from ..session import Session
from .sessions import check_model, check_session, new_session

if TYPE_CHECKING:
    from .facade import Studio

__all__ = ["ENCODING_FORMAT", "ENCODING_VERSION", "export_encoding", "import_encoding"]

ENCODING_FORMAT = "diffae-studio-encoding"
ENCODING_VERSION = 1

_OTHER_MODEL = " was encoded with model {theirs}, not the loaded {ours}; encode the photo again"


def export_encoding(studio: Studio, session: Session, path: str | os.PathLike) -> Path:
    """See :meth:`Studio.export_encoding`."""
    check_session(studio, session)
    path = Path(path)
    tensors = {
        "z_sem": session.z_sem.contiguous(),
        "x_T": session.x_T.contiguous(),
        "crop": torch.from_numpy(np.asarray(session.crop, dtype=np.uint8).copy()),
    }
    metadata = {
        "format": ENCODING_FORMAT,
        "version": str(ENCODING_VERSION),
        "model_id": session.model_id,
        "model_revision": session.model_revision,
        "T_inv": str(session.T_inv),
        "face_index": str(session.face_index),
        "kind": session.kind,
        "photo_hash": session.photo_hash,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata)
    return path


def import_encoding(studio: Studio, path: str | os.PathLike) -> Session:
    """See :meth:`Studio.import_encoding`."""
    path = Path(path)
    if not path.is_file():
        raise EncodingError(f"{path.name}: no such encoding file")
    try:
        meta, tensors = read_safetensors(path, error=EncodingError)
    except EncodingError:  # the helper's message names the whole (server-side) path
        raise EncodingError(f"{path.name}: not a readable safetensors encoding file") from None
    if meta.get("format") != ENCODING_FORMAT or {"z_sem", "x_T", "crop"} - set(tensors):
        raise EncodingError(f"{path.name}: not a DiffAE Studio encoding")
    key = (meta.get("model_id"), meta.get("model_revision"))
    check_model(studio, key, EncodingError, path.name + _OTHER_MODEL)
    z_sem, x_T, crop = _checked_tensors(studio, path, tensors)
    image = Image.fromarray(crop.numpy())
    try:
        T_inv = int(meta.get("T_inv", "0"))
        face_index = int(meta.get("face_index", "0"))
    except ValueError:
        raise EncodingError(f"{path.name}: malformed metadata") from None
    digest = meta.get("photo_hash")
    return new_session(
        studio,
        "imported",
        image,
        z_sem.float(),
        x_T.float(),
        digest=None if digest is None else str(digest),
        face_index=face_index,
        T_inv=T_inv,
    )


def _checked_tensors(
    studio: Studio, path: Path, tensors: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """z_sem, x_T and crop of an encoding file, their shapes checked against the model."""
    size = studio.image_size
    width = studio.model.config.autoencoder.z_sem_channels
    z_sem, x_T, crop = tensors["z_sem"], tensors["x_T"], tensors["crop"]
    if (
        tuple(z_sem.shape) != (1, width)
        or tuple(x_T.shape) != (1, 3, size, size)
        or tuple(crop.shape) != (size, size, 3)
        or crop.dtype != torch.uint8
    ):
        raise EncodingError(f"{path.name}: tensor shapes do not fit the loaded model")
    return z_sem, x_T, crop
