"""Checkpoint I/O's one reader of safetensors files: tensors, metadata and their checks.

Bundle weights, classifier artefacts, dataset latents and encodings are all safetensors files
with a ``format`` tag in their metadata. This module sits below ``classifier.py`` and
``checkpoints.py`` (which imports the classifier), so every reader of such a file can use it.
Each caller passes its own error type, so its users keep catching what they caught before.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import torch
from safetensors import safe_open

__all__ = ["read_safetensors"]


def read_safetensors(
    path: str | os.PathLike,
    *,
    error: type[Exception],
    file_format: str | None = None,
    kind: str = "",
    required: Iterable[str] = (),
    tensors: bool = True,
) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """The metadata and tensors of a safetensors file, checked; one-line ``error`` otherwise.

    Args:
        path: the file.
        error: the exception type to raise (the caller's, e.g. ``CheckpointError``).
        file_format: when given, the metadata's ``format`` tag must equal it.
        kind: what such a file is, for the message on a wrong tag ("DiffAE Studio classifier
            artefact").
        required: names of tensors the file must hold.
        tensors: False reads the header only (no tensor data): the tensors dict is empty.

    Raises:
        error: unreadable file (bad or truncated header), wrong ``format`` tag, missing tensors.
    """
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            values = {k: f.get_tensor(k) for k in f.keys()} if tensors else {}  # noqa: SIM118
    except Exception as exc:  # safetensors raises several types for a bad header
        raise error(
            f"{path} is not a readable safetensors file (unreadable safetensors header; "
            f"truncated?): {exc}"
        ) from None
    if file_format is not None and meta.get("format") != file_format:
        raise error(f"{path} is not a {kind or file_format + ' file'}")
    missing = set(required) - set(values) if tensors else set()
    if missing:
        raise error(f"{path} lacks tensors {sorted(missing)}")
    return meta, values
