"""Pure networks: shapes and forward passes, each built from its frozen config."""

from .autoencoder import AutoencoderNet, SemanticEncoder
from .latent_net import LatentNet

__all__ = ["AutoencoderNet", "LatentNet", "SemanticEncoder"]
