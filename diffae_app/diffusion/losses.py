"""Training-time forward noising and the eps-prediction losses."""

from __future__ import annotations

import torch

from .ddim import NoisePredictor
from .schedule import Schedule


def q_sample(
    schedule: Schedule, x_0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor
) -> torch.Tensor:
    """x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) noise, for a (B,) tensor of t.

    `schedule` must be the full training schedule (index == timestep).
    """
    table = torch.from_numpy(schedule.alpha_bar).to(x_0.device)[t.long()]
    shape = (-1,) + (1,) * (x_0.dim() - 1)
    signal = table.sqrt().float().reshape(shape)
    noise_scale = (1.0 - table).sqrt().float().reshape(shape)
    return signal * x_0 + noise_scale * noise


def sample_timesteps(
    batch_size: int, num_timesteps: int, *, generator: torch.Generator | None = None, device=None
) -> torch.Tensor:
    """Uniform t in [0, T), the released models' sampler of training timesteps."""
    return torch.randint(0, num_timesteps, (batch_size,), generator=generator, device=device)


def p2_weights(schedule: Schedule, gamma: float, k: float = 1.0) -> torch.Tensor:
    """Per-timestep loss weights 1 / (k + SNR_t)^gamma (Choi et al. 2022, 'P2'), mean 1 over t.

    gamma = 0 is the released recipe's uniform weighting. gamma > 0 moves the eps loss away
    from the nearly clean timesteps, where x_t alone suffices, to the noisy ones where the
    denoiser has to take the image's content from somewhere else: for a DiffAE, from z_sem.
    Normalising to mean 1 keeps the learning rate's meaning.
    """
    if gamma < 0 or k <= 0:
        raise ValueError(f"P2 weighting needs gamma >= 0 and k > 0, got gamma={gamma}, k={k}")
    alpha_bar = torch.from_numpy(schedule.alpha_bar)
    snr = alpha_bar / (1.0 - alpha_bar)
    weights = (k + snr).pow(-gamma)
    return (weights / weights.mean()).float()


def x0_weights(schedule: Schedule, cap: float) -> torch.Tensor:
    """Per-timestep eps-loss weights min(1 / SNR_t, cap), mean 1 over t.

    The eps loss weighs the error of the implied image x0_hat by SNR_t, so at the noisy
    timesteps, where x_t no longer shows small features (a mouth, narrow eyes, lipstick) and a
    DiffAE decoder can only take them from z_sem, those errors cost almost nothing, and the
    encoder is never asked to carry them. Weighting the eps loss by 1 / SNR_t makes it the
    x0-prediction loss: every noise level's image error counts the same. The cap bounds the
    weight where SNR_t -> 0 (1 / SNR is ~2.5e4 at t = T on the linear schedule), so the
    noisiest steps count cap * SNR_t in x0 terms. Normalising to mean 1 keeps the learning
    rate's meaning.
    """
    if cap <= 0:
        raise ValueError(f"the x0 weighting needs cap > 0, got {cap}")
    alpha_bar = torch.from_numpy(schedule.alpha_bar)
    weights = ((1.0 - alpha_bar) / alpha_bar).clamp(max=cap)
    return (weights / weights.mean()).float()


def eps_loss(
    model: NoisePredictor,
    schedule: Schedule,
    x_0: torch.Tensor,
    t: torch.Tensor,
    noise: torch.Tensor,
    *,
    cond: torch.Tensor | None = None,
    loss: str = "mse",
    pixel_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-sample eps-prediction loss (B,): mean over non-batch dims of (eps - eps_hat)^2 or |.|.

    'mse' is the autoencoder's loss, 'l1' the latent DPM's. `pixel_weights`, an (H, W) map
    with mean 1, weighs each pixel's error (e.g. `training.face_regions`); None weighs them alike.
    """
    x_t = q_sample(schedule, x_0, t, noise)
    pred = model(x_t, t) if cond is None else model(x_t, t, cond)
    diff = noise - pred.float()
    if loss == "mse":
        per_elem = diff.square()
    elif loss == "l1":
        per_elem = diff.abs()
    else:
        raise ValueError(f"unknown loss {loss!r}; use 'mse' or 'l1'")
    if pixel_weights is not None:
        per_elem = per_elem * pixel_weights.to(per_elem.device)
    return per_elem.flatten(1).mean(1)
