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


def _report(
    callback: StepCallback | None, i: int, num_steps: int, t: int, x: torch.Tensor, x0: torch.Tensor
) -> None:
    """Hand one finished step to the caller's callback (every solver reports the same keys)."""
    if callback is not None:
        callback({"i": i, "num_steps": num_steps, "t": t, "x": x, "pred_x0": x0})


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
        _report(callback, i, schedule.num_steps, t, x, x0)
    return x


def ddim_invert(
    model: NoisePredictor,
    x_0: torch.Tensor,
    schedule: Schedule,
    *,
    cond: torch.Tensor | None = None,
    clip_denoised: bool = True,
    fixed_point_iterations: int = 0,
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """DDIM run backwards (DiffAE's stochastic encoder): x_0 -> x_T.

    Step k moves x from alpha_bar[k] (x_0 counts as alpha_bar[0]) up to alpha_bar_next[k];
    the last step blends with alpha_bar_next = 0, so the returned x_T is the eps estimate at
    the noisiest kept timestep, as in the released `encode_stochastic`.

    The released step uses eps predicted at the state it *starts* from, while the matching
    `ddim_sample` step will use eps at the state it *lands* on; that mismatch is why short
    inversions reconstruct poorly. `fixed_point_iterations` = n > 0 re-predicts eps at the
    landing point (t_{k+1}) n times per step, starting from the released guess, so each
    step approaches the exact inverse of its sampling step, and stops at alpha_bar[K-1]
    (K-1 steps, (n+1)(K-1) model calls). n = 0 is the released algorithm, call for call.
    """
    if fixed_point_iterations < 0:
        raise ValueError(f"fixed_point_iterations must be >= 0, got {fixed_point_iterations}")
    num_steps = schedule.num_steps
    # Refined inversion stops at alpha_bar[K-1], the level `ddim_sample` starts from, so its
    # first step undoes the last inversion step exactly; the release blends one step further
    # (to alpha_bar = 0) and hands the sampler a slightly different x_T.
    last = num_steps - 1 if fixed_point_iterations else num_steps
    x = x_0
    eps = _predict(model, x, int(schedule.timesteps[0]), cond)
    for k in range(last):
        t = int(schedule.timesteps[k])
        alpha_bar_next = float(schedule.alpha_bar_next[k])
        if k + 1 < num_steps:
            t_next = int(schedule.timesteps[k + 1])
            for _ in range(fixed_point_iterations):
                x0, step_eps = _x0_and_eps(schedule, k, x, eps, clip_denoised)
                eps = _predict(model, _blend(x0, step_eps, alpha_bar_next), t_next, cond)
        x0, eps = _x0_and_eps(schedule, k, x, eps, clip_denoised)
        x = _blend(x0, eps, alpha_bar_next)
        _report(callback, k, last, t, x, x0)
        if k + 1 < last:
            eps = _predict(model, x, int(schedule.timesteps[k + 1]), cond)
    return x
