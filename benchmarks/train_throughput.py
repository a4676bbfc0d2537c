"""Training throughput on this CPU: images/s of one optimiser step, fp32 and bf16 autocast.

Measures the autoencoder stage's step (encode x_0, predict eps of x_t, MSE, backward, grad
clip, Adam) for the tiny32, synthfaces64 (the bundled model, at its recipe batch 32) and
ffhq256_autoenc (the released FFHQ256 architecture) presets, and the latent DPM's step
(L1 eps loss, AdamW) for synthfaces64's latent MLP at batch 128. Data loading is excluded:
batches are random tensors, so the numbers are the model's ceiling. One warm-up step, then
the median of `--steps` timed steps, as wall time and as CPU time (with one thread on a
shared machine the CPU time is what a dedicated core would take).

    python benchmarks/train_throughput.py [--steps 3] [--threads 1] [--only tiny32,synthfaces64]

Prints a table; asserts nothing. On a shared machine run it at a quiet moment.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch

from diffae_app.config import preset
from diffae_app.diffusion import eps_loss, make_schedule
from diffae_app.models import LatentNet

TRAIN = Path(__file__).resolve().parents[1] / "train"
# (preset, batch): the recipe batch where a CPU can afford it; FFHQ256 trains at 64 on GPUs,
# here a batch of 2 is enough to measure a rate.
AUTOENCODER_CASES = (("tiny32", 8), ("synthfaces64", 32), ("ffhq256_autoenc", 2))
LATENT_BATCH = 128


def _autoencoder_module(config):
    """train/autoencoder.py's training module (encoder + UNet behind one forward)."""
    spec = importlib.util.spec_from_file_location("train_autoencoder", TRAIN / "autoencoder.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script.EncodeAndPredict(config)


def _autocast(precision: str):
    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return nullcontext()


def autoencoder_step(name: str, batch: int, precision: str) -> Callable[[], None]:
    config = preset(name)
    torch.manual_seed(0)
    model = _autoencoder_module(config.autoencoder).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    schedule = make_schedule("linear", 1000)
    size = config.autoencoder.image_size
    x_0 = torch.rand(batch, 3, size, size) * 2 - 1

    def step() -> None:
        t = torch.randint(0, 1000, (batch,))
        noise = torch.randn_like(x_0)
        with _autocast(precision):
            loss = eps_loss(lambda x_t, t: model(x_t, t, x_0), schedule, x_0, t, noise).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def latent_step(name: str, batch: int, precision: str) -> Callable[[], None]:
    config = preset(name)
    torch.manual_seed(0)
    model = LatentNet(config.latent_net).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    schedule = make_schedule("const0.008", 1000)
    z_0 = torch.randn(batch, config.latent_net.num_channels)

    def step() -> None:
        t = torch.randint(0, 1000, (batch,))
        noise = torch.randn_like(z_0)
        with _autocast(precision):
            loss = eps_loss(model, schedule, z_0, t, noise, loss="l1").mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def median_seconds(step: Callable[[], None], steps: int) -> tuple[float, float]:
    """(wall, CPU) seconds per step, medians. On a shared machine the CPU time of a 1-thread
    run is what a dedicated core would take; the wall time includes waiting for one."""
    step()  # warm-up: allocations, oneDNN kernel selection
    wall, cpu = [], []
    for _ in range(steps):
        w, c = time.perf_counter(), time.process_time()
        step()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps", type=int, default=3, help="timed steps per row (after 1 warm-up)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument(
        "--only", default=None, help="comma-separated presets (default: all), 'latent' for the MLP"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    wanted = set(args.only.split(",")) if args.only else None
    cases = [("autoencoder", name, batch) for name, batch in AUTOENCODER_CASES]
    cases.append(("latent DPM", "synthfaces64", LATENT_BATCH))
    print(f"torch {torch.__version__}, {args.threads} thread(s), median of {args.steps} steps")
    print(
        f"{'stage':<12} {'preset':<16} {'batch':>5} {'precision':>9} {'s/step':>8} "
        f"{'items/s':>9} {'CPU s/step':>10} {'items/CPU-s':>11}"
    )
    for stage, name, batch in cases:
        key = "latent" if stage == "latent DPM" else name
        if wanted and key not in wanted:
            continue
        for precision in ("fp32", "bf16"):
            make = latent_step if stage == "latent DPM" else autoencoder_step
            wall, cpu = median_seconds(make(name, batch, precision), args.steps)
            print(
                f"{stage:<12} {name:<16} {batch:>5} {precision:>9} {wall:>8.3f} "
                f"{batch / wall:>9.3g} {cpu:>10.3f} {batch / cpu:>11.3g}",
                flush=True,
            )


if __name__ == "__main__":
    main()
