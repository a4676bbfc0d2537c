"""Choosing the inference precision by measurement ("auto"): bf16 only where it pays and is faithful.

bfloat16 halves the bytes every layer moves and, on CPUs with bf16 instructions (Intel AMX,
AVX512-BF16 on AMD EPYC and recent Xeons), runs the convolutions about 2-5x faster than
float32. Without those instructions PyTorch emulates bf16 and it is *slower* than float32.
So "auto" decides in two steps, at load time:

1. the hardware: a CUDA GPU that supports bf16, or a CPU whose flags list ``amx_bf16`` or
   ``avx512_bf16``; anything else stays float32;
2. the fidelity: the same face (a procedurally drawn one, deterministic) is encoded, inverted
   and rendered in float32 and in bf16; bf16 is kept only when its render agrees with
   float32's to at least :data:`MIN_BF16_PSNR_DB` (invisible differences).

The result says which precision won and why, in one line for the app's header.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = ["MIN_BF16_PSNR_DB", "PrecisionChoice", "fidelity_db", "native_bf16"]

#: bf16 is chosen only when its reconstruction agrees with float32's at least this well.
MIN_BF16_PSNR_DB = 40.0
#: DDIM steps of the start-up probe (inversion and render each): enough to exercise every
#: layer and the sampler's accumulation, cheap even for a 256-px model.
PROBE_STEPS = 5

_CPU_FLAGS = (("amx_bf16", "AMX"), ("avx512_bf16", "AVX512-BF16"))


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision "auto" picked, with its evidence.

    Attributes:
        precision: "float32" or "bfloat16".
        reason: one line for people, e.g. "bfloat16: the CPU has AVX512-BF16 and bf16
            renders agree with float32 at 52.3 dB".
        psnr_db: the measured agreement, None when no measurement was needed.
    """

    precision: str
    reason: str
    psnr_db: float | None = None


def native_bf16(device: torch.device, cpuinfo: str | None = None) -> str | None:
    """The name of the bf16 hardware support of ``device`` ("AMX", "AVX512-BF16", "CUDA"),
    or None when bf16 would be emulated (slower than float32)."""
    if device.type == "cuda":
        return "CUDA" if torch.cuda.is_bf16_supported() else None
    if device.type != "cpu":
        return None
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:  # not Linux: no cheap way to read the flags, stay float32
            return None
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[-1].split())
            break
    for flag, name in _CPU_FLAGS:
        if flag in flags:
            return name
    return None


def fidelity_db(reference, candidate, *, steps: int = PROBE_STEPS) -> float:
    """PSNR (dB) between the reconstructions of one face by two models (``DiffAE``s with the
    same weights, e.g. float32 and bf16): encoder, DDIM inversion and render, each in the
    model's own precision. inf when identical."""
    from PIL import Image

    from .data.synthfaces import generate
    from .imaging import image_to_tensor

    face = Image.fromarray(generate(0, reference.image_size)[0])
    x = image_to_tensor(face)[None]
    renders = []
    for model in (reference, candidate):
        with torch.inference_mode():
            z_sem = model.encode(x)
            x_T = model.encode_stochastic(x, z_sem, steps)
            renders.append(model.render(x_T, z_sem, steps).float().cpu().numpy())
    mse = float(np.mean((renders[0] - renders[1]) ** 2))  # images in [0, 1]
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)
