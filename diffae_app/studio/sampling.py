"""New faces from the model: random faces from the latent DPM, and interpolations between two.

Every random draw comes from a CPU ``torch.Generator`` seeded by the caller, so results do not
depend on the device's generator.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch
from PIL import Image

from ..editing import edit_z_sem, lerp, slerp
from ..errors import NoAttributeClassifier, NoLatentDPM, StudioError
from ..progress import PhaseProgress
from ..session import ProgressCallback, Session
from .arguments import check_seed, is_whole, steps_or_default
from .rendering import to_image
from .sessions import check_session, new_session

if TYPE_CHECKING:
    from .facade import Studio

__all__ = ["interpolate", "sample_sessions"]


def sample_sessions(
    studio: Studio,
    n: int,
    *,
    seed: int,
    T_render: int | None,
    T_latent: int | None,
    push: Mapping[str, float] | None,
    progress: ProgressCallback | None,
) -> list[Session]:
    """See :meth:`Studio.sample_sessions`."""
    if not studio.has_latent_dpm:
        raise NoLatentDPM(
            f"model {studio.model_id} has no latent DPM, so it cannot draw random faces; load "
            "a model with one (official *_autoenc_latent or our bundles)"
        )
    if not is_whole(n) or not 1 <= n <= 64:
        raise StudioError(f"n must be a whole number from 1 to 64, got {n!r}")
    check_seed(seed)
    T_render = steps_or_default(T_render, "T_render")
    if T_latent is None:
        T_latent = studio.model.config.default_latent_steps
    T_latent = steps_or_default(T_latent, "T_latent")
    sliders = studio.slider_set()
    if push and sliders is None:
        raise NoAttributeClassifier(
            "this model has no attribute classifier, so samples cannot be pushed"
        )
    size = studio.image_size
    width = studio.model.config.latent_net.num_channels
    generator = torch.Generator().manual_seed(seed)
    steps = PhaseProgress(progress, n * (T_render + 1))
    sessions = []
    for i in range(n):
        # Face i depends only on (seed, i): x_T then the latent noise, face after face.
        x_T = torch.randn(1, 3, size, size, generator=generator)
        noise = torch.randn(1, width, generator=generator)
        with torch.inference_mode():
            z_sem = studio.model.sample_z(1, T_latent, noise=noise).cpu()
            steps.advance(f"sampling z_sem {i + 1}/{n}")
            if push:
                z_sem = edit_z_sem(z_sem, sliders, push)
            rendered = studio.model.render(
                x_T, z_sem, T_render, callback=steps.ddim(f"rendering face {i + 1}/{n}")
            )
        sessions.append(new_session(studio, "sample", to_image(rendered.cpu()), z_sem, x_T))
    steps.finish("sampled")
    return sessions


def interpolate(
    studio: Studio,
    session_a: Session,
    session_b: Session,
    frames: int,
    *,
    T_render: int | None,
    progress: ProgressCallback | None,
) -> list[Image.Image]:
    """See :meth:`Studio.interpolate`."""
    check_session(studio, session_a)
    check_session(studio, session_b)
    if not is_whole(frames) or not 2 <= frames <= 256:
        raise StudioError(f"frames must be a whole number from 2 to 256, got {frames!r}")
    T_render = steps_or_default(T_render, "T_render")
    steps = PhaseProgress(progress, frames * T_render)
    images = []
    for k in range(frames):
        t = k / (frames - 1)
        z_sem = lerp(session_a.z_sem, session_b.z_sem, t)
        x_T = slerp(session_a.x_T, session_b.x_T, t)
        with torch.inference_mode():
            rendered = studio.model.render(
                x_T, z_sem, T_render, callback=steps.ddim(f"rendering frame {k + 1}/{frames}")
            )
        images.append(to_image(rendered.cpu()))
    steps.finish("rendered")
    return images
