"""A second-order multistep solver (DPM-Solver++(2M), deterministic) for rendering and inversion.

Same signature and callback as `ddim.ddim_sample` / `ddim.ddim_invert`, one model call per step.
Lu et al. 2022, "DPM-Solver++" (https://arxiv.org/abs/2211.01095), Algorithm 2, in the
data-prediction form: with alpha_k = sqrt(alpha_bar[k]), sigma_k = sqrt(1 - alpha_bar[k]) and
lambda_k = log(alpha_k / sigma_k), one step from level s to level t (h = lambda_t - lambda_s) is

    x_t = (sigma_t / sigma_s) x_s - alpha_t * expm1(-h) * D

With D = x0_hat(x_s) this is exactly a DDIM step (first order). The 2M solver instead uses
D = (1 + 1/(2r)) x0_hat(x_s) - 1/(2r) x0_hat(previous state), r = h_previous / h: a linear
extrapolation of the model's x_0 estimate across the step from the estimate one step back,
which costs no extra call and makes the global error second order in the step size.

Inversion is the same update run towards more noise (h < 0), extrapolating from the estimates at
the *less* noisy states already visited. Like the refined DDIM inversion it stops at
alpha_bar[K-1], the level the K-step render starts from, after K-1 calls.
"""

from __future__ import annotations

import math

import torch

from .ddim import NoisePredictor, StepCallback, _blend, _predict, _report, _x0_and_eps
from .schedule import Schedule


def _log_snr(alpha_bar: float) -> float:
    """lambda = log(alpha / sigma) = 0.5 * log(alpha_bar / (1 - alpha_bar))."""
    return 0.5 * math.log(alpha_bar / (1.0 - alpha_bar))


def _pred_x0(x: torch.Tensor, eps: torch.Tensor, alpha_bar: float, clip: bool) -> torch.Tensor:
    """x0_hat = (x - sigma eps) / alpha, clipped to [-1, 1] when asked (as DDIM does)."""
    x0 = (x - math.sqrt(1.0 - alpha_bar) * eps) / math.sqrt(alpha_bar)
    return x0.clamp(-1, 1) if clip else x0


def _multistep(
    x: torch.Tensor,
    x0: torch.Tensor,
    previous_x0: torch.Tensor | None,
    lam_from: float,
    lam_to: float,
    lam_previous: float | None,
    alpha_bar_from: float,
    alpha_bar_to: float,
) -> torch.Tensor:
    """One 2M step from level `alpha_bar_from` to `alpha_bar_to` (either direction).

    previous_x0 is the estimate at the state one step back (log-SNR lam_previous), None for
    the first step, which is then a DDIM step.
    """
    h = lam_to - lam_from
    if previous_x0 is None or lam_previous is None:
        data = x0
    else:
        r = (lam_from - lam_previous) / h
        data = x0 + (x0 - previous_x0) / (2.0 * r)
    sigma_ratio = math.sqrt((1.0 - alpha_bar_to) / (1.0 - alpha_bar_from))
    return sigma_ratio * x - math.sqrt(alpha_bar_to) * math.expm1(-h) * data


def dpmpp_2m_sample(
    model: NoisePredictor,
    x_T: torch.Tensor,
    schedule: Schedule,
    *,
    cond: torch.Tensor | None = None,
    clip_denoised: bool = True,
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """DPM-Solver++(2M) from x_T (at alpha_bar[K-1]) to x_0: K = schedule.num_steps calls.

    x_T: (B, ...) float. Returns x_0 of the same shape (in [-1, 1] when clip_denoised). The
    first step is a DDIM step (no history yet); the last one lands on alpha_bar = 1, where
    the update reduces to x_0 = D and the extrapolation's weight 1/(2r) is 0/0, so it returns
    the last x_0 estimate, as DDIM does. callback receives {'i', 'num_steps', 't', 'x',
    'pred_x0'} after each step, exactly like `ddim_sample`.
    """
    x = x_T
    previous_x0: torch.Tensor | None = None
    lam_previous: float | None = None
    for i, k in enumerate(reversed(range(schedule.num_steps))):
        t = int(schedule.timesteps[k])
        a, a_to = float(schedule.alpha_bar[k]), float(schedule.alpha_bar_prev[k])
        x0 = _pred_x0(x, _predict(model, x, t, cond), a, clip_denoised)
        lam = _log_snr(a)
        if a_to >= 1.0:
            x = x0
        else:
            x = _multistep(x, x0, previous_x0, lam, _log_snr(a_to), lam_previous, a, a_to)
        previous_x0, lam_previous = x0, lam
        _report(callback, i, schedule.num_steps, t, x, x0)
    return x


def dpmpp_2m_invert(
    model: NoisePredictor,
    x_0: torch.Tensor,
    schedule: Schedule,
    *,
    cond: torch.Tensor | None = None,
    clip_denoised: bool = True,
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """DPM-Solver++(2M) towards noise: x_0 (taken as the state at alpha_bar[0]) -> x_T at
    alpha_bar[K-1], in K-1 steps and K-1 model calls.

    The start level follows the released inversion, which also feeds x_0 to the network as
    the state at the least noisy kept timestep. Ending at alpha_bar[K-1] (not at alpha_bar =
    0 as the release does) hands `dpmpp_2m_sample` the state at the level it starts from.
    callback receives {'i', 'num_steps', 't', 'x', 'pred_x0'} after each step.
    """
    last = schedule.num_steps - 1
    x = x_0
    previous_x0: torch.Tensor | None = None
    lam_previous: float | None = None
    for k in range(last):
        t = int(schedule.timesteps[k])
        a, a_to = float(schedule.alpha_bar[k]), float(schedule.alpha_bar_next[k])
        x0 = _pred_x0(x, _predict(model, x, t, cond), a, clip_denoised)
        lam = _log_snr(a)
        x = _multistep(x, x0, previous_x0, lam, _log_snr(a_to), lam_previous, a, a_to)
        previous_x0, lam_previous = x0, lam
        _report(callback, k, last, t, x, x0)
    return x


def ddim_invert_extrapolated(
    model: NoisePredictor,
    x_0: torch.Tensor,
    schedule: Schedule,
    *,
    cond: torch.Tensor | None = None,
    clip_denoised: bool = True,
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """DDIM inversion at one model call per step that approaches the exact inverse of
    `ddim_sample`: x_0 (as the state at alpha_bar[0]) -> x_T at alpha_bar[K-1], K calls.

    The exact inverse of the render step k+1 -> k needs eps at the state it lands on
    (x_{k+1}), which is unknown. This guesses that eps by linear extrapolation from the
    last two predictions (second order; the released inversion's guess, eps at x_k, is
    first order), takes the step, asks the model for eps at that provisional x_{k+1} (the one
    call of the step) and redoes the step with it. That eps, taken at a point within
    O(h^3) of the final x_{k+1}, is reused as the next step's eps at x_{k+1}. One fixed-point
    iteration of `ddim_invert` costs two calls per step instead and starts from the first
    order guess.
    """
    last = schedule.num_steps - 1
    x = x_0
    eps_previous: torch.Tensor | None = None
    eps = _predict(model, x, int(schedule.timesteps[0]), cond)
    for k in range(last):
        alpha_bar_next = float(schedule.alpha_bar_next[k])
        guess = eps if eps_previous is None else 2 * eps - eps_previous
        x0, step_eps = _x0_and_eps(schedule, k, x, guess, clip_denoised)
        landing = _predict(
            model, _blend(x0, step_eps, alpha_bar_next), int(schedule.timesteps[k + 1]), cond
        )
        x0, step_eps = _x0_and_eps(schedule, k, x, landing, clip_denoised)
        x = _blend(x0, step_eps, alpha_bar_next)
        eps_previous, eps = eps, landing
        _report(callback, k, last, int(schedule.timesteps[k]), x, x0)
    return x
