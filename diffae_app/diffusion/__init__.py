"""Stateless diffusion math: schedules, DDIM and DPM-Solver++(2M) sampling and inversion,
training losses."""

from .ddim import ddim_invert, ddim_sample
from .dpm_solver import ddim_invert_extrapolated, dpmpp_2m_invert, dpmpp_2m_sample
from .losses import (
    eps_loss,
    p2_weights,
    q_sample,
    sample_timesteps,
    x0_weights,
)
from .schedule import Schedule, ddim_timesteps, make_betas, make_schedule, network_timesteps

__all__ = [
    "Schedule",
    "ddim_invert",
    "ddim_invert_extrapolated",
    "ddim_sample",
    "ddim_timesteps",
    "dpmpp_2m_invert",
    "dpmpp_2m_sample",
    "eps_loss",
    "make_betas",
    "make_schedule",
    "network_timesteps",
    "p2_weights",
    "x0_weights",
    "q_sample",
    "sample_timesteps",
]
