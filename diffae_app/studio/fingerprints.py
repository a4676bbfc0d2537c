"""Names for a model's weights: which model a session, recipe or classifier belongs to."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

import torch

from ..diffae import DiffAE, _stored_dtypes

__all__ = ["fit_fingerprint", "model_fingerprint"]

# Elements sampled per tensor: enough to tell retrained or fine-tuned weights apart, cheap even
# for the 1.3 GB FFHQ256 model.
_FINGERPRINT_SAMPLES = 256


def _config_digest(model: DiffAE) -> hashlib._Hash:
    return hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True).encode())


def _modules(model: DiffAE) -> Iterator[tuple[str, torch.nn.Module]]:
    yield "autoencoder", model.autoencoder
    if model.latent_net is not None:
        yield "latent_net", model.latent_net


def _sampled_bytes(tensor: torch.Tensor) -> bytes:
    """``_FINGERPRINT_SAMPLES`` evenly strided values of the tensor, as float32 bytes."""
    flat = tensor.detach().reshape(-1)
    step = max(1, flat.numel() // _FINGERPRINT_SAMPLES)
    return flat[::step].to("cpu", torch.float32).contiguous().numpy().tobytes()


def model_fingerprint(model: DiffAE) -> str:
    """12 hex digits identifying the model's architecture and weights.

    Hashes the config and, for every tensor, its name, shape and ``_FINGERPRINT_SAMPLES``
    evenly strided values: reading all of a 1.3 GB model would take seconds.
    """
    digest = _config_digest(model)
    for prefix, module in _modules(model):
        for name, tensor in sorted(module.state_dict().items()):
            digest.update(f"{prefix}.{name}{tuple(tensor.shape)}".encode())
            digest.update(_sampled_bytes(tensor))
    return digest.hexdigest()[:12]


def fit_fingerprint(model: DiffAE) -> str:
    """12 hex digits naming the weights an attribute classifier is fitted to, equal at every
    precision (unlike :func:`model_fingerprint`, which sees bfloat16 rounding).

    Hashes the config, every tensor's name and shape, and sampled values of the tensors kept
    float32 in every precision: the latent DPM and, in the autoencoder, the normalisation
    layers and the output layer, which any retraining or fine-tuning moves. Stored in
    classifier artefacts so an app lists only the ones that fit its model.
    """
    digest = _config_digest(model)
    for prefix, module in _modules(model):
        kept = _stored_dtypes(module, torch.bfloat16)
        for name, tensor in sorted(module.state_dict().items()):
            digest.update(f"{prefix}.{name}{tuple(tensor.shape)}".encode())
            if prefix == "latent_net" or kept.get(name) == torch.float32:
                digest.update(_sampled_bytes(tensor))
    return digest.hexdigest()[:12]
