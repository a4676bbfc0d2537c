"""DDIM sampling (eta = 0) and DDIM inversion as plain functions.

Every function takes a noise predictor `model(x_t, t) -> eps` or, when `cond` is given,
`model(x_t, t, cond) -> eps`, where t is a (B,) int64 tensor of *original* timesteps.
Symbols follow Song et al. 2021 (DDIM) and the DiffAE paper: alpha_bar is the cumulative
product of (1 - beta); x_0 is predicted from eps at every step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .schedule import Schedule

NoisePredictor = Callable[..., torch.Tensor]
StepCallback = Callable[[dict[str, Any]], None]


def _predict(
    model: NoisePredictor, x: torch.Tensor, t: int, cond: torch.Tensor | None
) -> torch.Tensor:
    t_batch = torch.full((x.shape[0],), t, dtype=torch.int64, device=x.device)
    eps = model(x, t_batch) if cond is None else model(x, t_batch, cond)
    return eps.to(x.dtype)


def _x0_and_eps(
    schedule: Schedule, k: int, x: torch.Tensor, eps: torch.Tensor, clip: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """x0_hat = sqrt(1/a) x - sqrt(1/a - 1) eps, optionally clipped; eps re-derived from it.

    Re-deriving eps after clipping (as the released sampler does) keeps the step consistent
    with the clipped x0_hat; without clipping it returns eps up to rounding.
    """
    a = float(schedule.alpha_bar[k])
    recip = torch.tensor((1.0 / a) ** 0.5, dtype=torch.float32, device=x.device)
    recip_m1 = torch.tensor((1.0 / a - 1) ** 0.5, dtype=torch.float32, device=x.device)
    x0 = recip * x - recip_m1 * eps
    if clip:
        x0 = x0.clamp(-1, 1)
    return x0, (recip * x - x0) / recip_m1


def _blend(x0: torch.Tensor, eps: torch.Tensor, alpha_bar: float) -> torch.Tensor:
    """sqrt(a) x0 + sqrt(1 - a) eps, with a cast to float32 first (matches the release)."""
    a = torch.tensor(alpha_bar, dtype=torch.float32, device=x0.device)
    return x0 * torch.sqrt(a) + torch.sqrt(1 - a) * eps


def ddim_sample(
    model: NoisePredictor,
    x_T: torch.Tensor,
    schedule: Schedule,
    *,
    cond: torch.Tensor | None = None,
    clip_denoised: bool = True,
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """Deterministic DDIM from x_T (most noisy) to x_0, K = schedule.num_steps model calls.

    x_T: (B, ...) float. Returns x_0 of the same shape (in [-1, 1] when clip_denoised).
    callback receives {'i', 'num_steps', 't', 'x', 'pred_x0'} after each step.
    """
    x = x_T
    for i, k in enumerate(reversed(range(schedule.num_steps))):
        t = int(schedule.timesteps[k])
        eps = _predict(model, x, t, cond)
        x0, eps = _x0_and_eps(schedule, k, x, eps, clip_denoised)
        x = _blend(x0, eps, float(schedule.alpha_bar_prev[k]))
        if callback is not None:
            callback({"i": i, "num_steps": schedule.num_steps, "t": t, "x": x, "pred_x0": x0})
    return x


def ddim_invert(
    model: NoisePredictor,
    x_0: torch.Tensor,
    schedule: Schedule,
    *,
    cond: torch.Tensor | None = None,
    clip_denoised: bool = True,
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """DDIM run backwards (DiffAE's stochastic encoder): x_0 -> x_T.

    The last step blends with alpha_bar_next = 0, so the returned x_T is the eps estimate at
    the noisiest kept timestep, as in the released `encode_stochastic`.
    """
    x = x_0
    for k in range(schedule.num_steps):
        t = int(schedule.timesteps[k])
        eps = _predict(model, x, t, cond)
        x0, eps = _x0_and_eps(schedule, k, x, eps, clip_denoised)
        x = _blend(x0, eps, float(schedule.alpha_bar_next[k]))
        if callback is not None:
            callback({"i": k, "num_steps": schedule.num_steps, "t": t, "x": x, "pred_x0": x0})
    return x
