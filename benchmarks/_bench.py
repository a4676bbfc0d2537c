"""Shared helpers of the speed, memory and fidelity benchmarks (not part of the package).

Timing rules used everywhere: a warm-up call first, then the median of `repeats` calls, with
`torch.cuda.synchronize()` around each call on CUDA. Speed-ups are ratios of medians measured
in the same process, so a busy machine slows both sides alike.
"""

from __future__ import annotations

import datetime
import functools
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from diffae_app import DiffAE
from diffae_app.config import ModelConfig, preset
from diffae_app.models import AutoencoderNet

REPO = Path(__file__).resolve().parents[1]
BUNDLED_MODEL = REPO / "assets" / "models" / "synthfaces64"
# Short names on the command line -> preset names.
CONFIG_ALIASES = {
    "synthfaces64": "synthfaces64",
    "ffhq128": "ffhq128_autoenc_130M",
    "ffhq256": "ffhq256_autoenc",
    "tiny32": "tiny32",
}


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def fast_precisions(device: torch.device) -> list[str]:
    """The reduced precisions worth timing on `device`.

    CPUs without native fp16 arithmetic (this one: AVX512-BF16 but no AVX512-FP16) run
    float16 convolutions through slow reference kernels, so only bf16 is timed there.
    """
    if device.type == "cuda":
        return ["float16", "bfloat16"] if torch.cuda.is_bf16_supported() else ["float16"]
    return ["bfloat16"]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(function: Callable[[], object], device: torch.device) -> tuple[float, object]:
    synchronize(device)
    start = time.perf_counter()
    result = function()
    synchronize(device)
    return time.perf_counter() - start, result


def median_time(
    function: Callable[[], object], device: torch.device, repeats: int, warmup: int = 1
) -> float:
    for _ in range(warmup):
        function()
    return statistics.median(timed(function, device)[0] for _ in range(max(1, repeats)))


def adaptive_time(
    function: Callable[[], object], device: torch.device, budget: float = 15.0, most: int = 3
) -> tuple[float, object]:
    """Median seconds of up to `most` calls, fewer when one call takes over budget / most
    (long renders are timed once); returns the last call's result too."""
    times = []
    result = None
    while len(times) < most:
        seconds, result = timed(function, device)
        times.append(seconds)
        if sum(times) + seconds > budget:
            break
    return statistics.median(times), result


def matmul_rate(
    dtype: torch.dtype, device: torch.device, size: int = 2048, repeats: int = 7
) -> float:
    """Measured dense matmul throughput in GFLOP/s (the practical peak for conv/GEMM work)."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    seconds = median_time(lambda: a @ b, device, repeats, warmup=2)
    return 2 * size**3 / seconds / 1e9


def count_flops(function: Callable[[], object]) -> int:
    """FLOPs of one call, counted by torch.utils.flop_counter (convs, matmuls, attention)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        function()
    return counter.get_total_flops()


class UNetCalls:
    """Counts forward passes of a DiffAE's decoder UNet (a forward pre-hook on the autoencoder;
    the semantic encoder is called on its own and is not counted). One batched call is one."""

    def __init__(self, model: DiffAE) -> None:
        self.count = 0
        self._handle = model.autoencoder.register_forward_pre_hook(self._hook)

    def _hook(self, module: torch.nn.Module, args: object) -> None:
        self.count += 1

    def take(self) -> int:
        """The calls since the last take."""
        count, self.count = self.count, 0
        return count

    def close(self) -> None:
        self._handle.remove()


def random_model(
    config_name: str, *, precision: str, device: torch.device, seed: int = 0
) -> DiffAE:
    """A DiffAE with random weights (fine for timing), the same weights for every precision."""
    config = preset(CONFIG_ALIASES.get(config_name, config_name)).replace(latent_net=None)
    return DiffAE.from_state(
        config, random_state(config, seed), precision=precision, device=device, source="random"
    )


@functools.lru_cache(maxsize=1)  # one model's float32 weights at most (FFHQ256: 674 MB)
def random_state(config: ModelConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """Seeded random UNet weights; every precision variant of a config starts from these."""
    torch.manual_seed(seed)
    return AutoencoderNet(config.autoencoder).state_dict()


def machine_line(threads: int | None = None) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    flags = ""
    try:
        text = Path("/proc/cpuinfo").read_text()
        wanted = ("avx512_bf16", "amx_bf16", "avx512_fp16", "avx512f", "avx2")
        flags = " ".join(f for f in wanted if f" {f}" in text)
    except OSError:
        pass
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return (
        f"{datetime.datetime.now().isoformat(timespec='seconds')} | {cpu} ({flags}) | "
        f"{os.cpu_count()} logical CPUs | torch {torch.__version__} | "
        f"{threads or torch.get_num_threads()} threads | {gpu}"
    )


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-markdown table (pastes into RESULTS.md as is)."""

    def cell(value: object) -> str:
        if isinstance(value, float):
            if math.isinf(value):
                return "inf"
            if math.isnan(value):
                return "-"
            return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def seconds(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"
