"""DiffAE Studio: Diffusion Autoencoders (Preechakul et al., CVPR 2022) for face editing."""

from .diffae import DiffAE

__all__ = ["DiffAE"]
