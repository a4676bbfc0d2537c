"""Noise schedules and their DDIM respacing, as plain float64 tables.

The released weights were trained with T = 1000 and evaluated on respaced schedules whose
kept timesteps are exactly those of the official 'ddimN' spacing; the network receives the
*original* timestep index (times 1000 / T only for configs with the official
`rescale_timesteps`, see `network_timesteps`). Tables are float64 and are cast to float32
only when gathered, as the official sampler does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


def make_betas(schedule: str, num_timesteps: int) -> np.ndarray:
    """beta_t for t < num_timesteps, float64, as the official `get_named_beta_schedule`.

    'linear': DDPM's linspace(1e-4, 0.02) scaled by 1000 / T (Ho et al. 2020).
    'cosine': Nichol & Dhariwal's alpha_bar(s) = cos((s + 0.008) / 1.008 * pi / 2)^2,
    betas capped at 0.999.
    'constX': a constant beta X * 1000 / T for every step; the released latent DPMs use
    'const0.008' with T = 1000, so alpha_bar at t=999 is 0.992^1000 ~ 3.3e-4. (The official
    code knows X in 0.01, 0.015, 0.008, 0.0065, 0.0055, 0.0045, 0.0035, 0.0025, 0.0015;
    any other positive X is accepted here for our own models.)
    """
    if num_timesteps < 1:
        raise ValueError(f"the number of diffusion steps T must be >= 1, got {num_timesteps}")
    scale = 1000 / num_timesteps
    if schedule == "linear":
        return np.linspace(scale * 0.0001, scale * 0.02, num_timesteps, dtype=np.float64)
    if schedule == "cosine":

        def alpha_bar(s: float) -> float:
            return math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2

        return np.array(
            [
                min(1 - alpha_bar((i + 1) / num_timesteps) / alpha_bar(i / num_timesteps), 0.999)
                for i in range(num_timesteps)
            ],
            dtype=np.float64,
        )
    if schedule.startswith("const"):
        try:
            value = float(schedule[len("const") :])
        except ValueError:
            value = float("nan")
        if not 0 < value * scale <= 1:
            raise ValueError(
                f"bad constant beta schedule {schedule!r} for T={num_timesteps}; e.g. 'const0.008'"
            )
        return np.array([scale * value] * num_timesteps, dtype=np.float64)
    raise ValueError(f"unknown beta schedule {schedule!r}; use 'linear', 'cosine' or 'constX'")


def network_timesteps(t: torch.Tensor, num_timesteps: int, rescale: bool) -> torch.Tensor:
    """What the network is given for training-schedule steps t: t itself, or with the
    official `rescale_timesteps` t * 1000 / T as float32 (its `_WrappedModel`)."""
    if not rescale:
        return t
    return t.float() * (1000.0 / num_timesteps)


def ddim_timesteps(
    num_timesteps: int, num_steps: int, spacing: str = "uniform", power: float = 1.0
) -> list[int]:
    """The kept original timesteps for a `num_steps` DDIM sampler, ascending.

    spacing 'uniform' is the official 'ddimN' rule (below). spacing 'power' keeps
    t_i = round((i / (K - 1)) ** power * (T - 1)): power > 1 puts more of the K steps at low
    noise, where the DDIM trajectory bends most, and always ends at t = T - 1 so x_T is
    nearly pure noise. benchmarks/fidelity_study.py measures what that buys.
    """
    if spacing == "power":
        if not 1 <= num_steps <= num_timesteps:
            raise ValueError(f"num_steps must be in [1, {num_timesteps}], got {num_steps}")
        if power <= 0:
            raise ValueError(f"spacing power must be > 0, got {power}")
        if num_steps == 1:
            return [num_timesteps - 1]
        kept: list[int] = []
        for i in range(num_steps):
            t = round((i / (num_steps - 1)) ** power * (num_timesteps - 1))
            # Strictly increasing, and room left for the remaining steps below T.
            t = max(t, kept[-1] + 1 if kept else 0)
            kept.append(min(t, num_timesteps - num_steps + i))
        return kept
    if spacing != "uniform":
        raise ValueError(f"unknown DDIM spacing {spacing!r}; use 'uniform' or 'power'")
    return _official_ddim_timesteps(num_timesteps, num_steps)


def _official_ddim_timesteps(num_timesteps: int, num_steps: int) -> list[int]:
    """The official 'ddimN' rule: the smallest stride s with len(range(0, T, s)) == N. Counts no
    stride reaches (rare, e.g. 999 of 1000) fall back to N evenly rounded points.
    """
    if not 1 <= num_steps <= num_timesteps:
        raise ValueError(f"num_steps must be in [1, {num_timesteps}], got {num_steps}")
    for stride in range(1, num_timesteps):
        if len(range(0, num_timesteps, stride)) == num_steps:
            return list(range(0, num_timesteps, stride))
    if num_steps == num_timesteps:
        return list(range(num_timesteps))
    frac = (num_timesteps - 1) / (num_steps - 1) if num_steps > 1 else 0.0
    return sorted({round(i * frac) for i in range(num_steps)})


@dataclass(frozen=True)
class Schedule:
    """A (possibly respaced) diffusion schedule. Index k runs over kept steps, 0 = least noisy.

    timesteps[k] is the original training timestep fed to the network at step k.
    """

    timesteps: np.ndarray  # (K,) int64
    alpha_bar: np.ndarray  # (K,) float64, cumulative product of (1 - beta)
    alpha_bar_prev: np.ndarray  # (K,) alpha_bar[k-1], 1 for k = 0
    alpha_bar_next: np.ndarray  # (K,) alpha_bar[k+1], 0 for the last step

    @property
    def num_steps(self) -> int:
        return len(self.timesteps)

    def gather(self, table: np.ndarray, k: int, like: torch.Tensor) -> torch.Tensor:
        """table[k] as a float32 scalar tensor on like's device (float64 math, then cast)."""
        return torch.tensor(float(table[k]), dtype=torch.float32, device=like.device)


def make_schedule(
    schedule: str,
    num_timesteps: int,
    num_steps: int | None = None,
    *,
    spacing: str = "uniform",
    power: float = 1.0,
) -> Schedule:
    """The training schedule (num_steps None) or its DDIM respacing to num_steps steps
    (`spacing`/`power` as in `ddim_timesteps`)."""
    betas = make_betas(schedule, num_timesteps)
    base_alpha_bar = np.cumprod(1.0 - betas)
    kept = (
        list(range(num_timesteps))
        if num_steps is None
        else ddim_timesteps(num_timesteps, num_steps, spacing, power)
    )
    # Respaced betas 1 - a_k / a_{k-1} and their cumulative product, computed the same way
    # as the official SpacedDiffusion so the float64 tables agree to the last bit.
    new_betas = []
    last = 1.0
    for t in kept:
        new_betas.append(1 - base_alpha_bar[t] / last)
        last = base_alpha_bar[t]
    alpha_bar = np.cumprod(1.0 - np.asarray(new_betas, dtype=np.float64))
    return Schedule(
        timesteps=np.asarray(kept, dtype=np.int64),
        alpha_bar=alpha_bar,
        alpha_bar_prev=np.append(1.0, alpha_bar[:-1]),
        alpha_bar_next=np.append(alpha_bar[1:], 0.0),
    )
