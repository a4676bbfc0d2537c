"""Model speed: encoder, UNet forward, render and inversion per precision variant, with fidelity.

    python benchmarks/model_speed.py [--configs synthfaces64 ffhq128 ffhq256] [--batches 1 4]
        [--repeats 3] [--render-steps 20] [--render-batches 1 4] [--compile] [--device auto]

Random weights (timing does not depend on their values; the fidelity column is then a
property of the arithmetic, not of a trained model: benchmarks/fidelity_study.py measures it
on the bundled model). For each config and batch size every variant is timed in the same
process, as a ratio to the float32 eager baseline:

- "fp32 eager": our networks in float32 under torch.no_grad, every ResBlock projecting t and
  z_sem at every call: the official code's arithmetic (tests/test_diffae.py checks it
  against the official reference outputs). The baseline of every ratio.
- "fp32 facade": DiffAE(precision="float32") as shipped: inference_mode, conditioning
  projections computed once per DDIM run (`DiffAE.ddim_predictor`), NCHW.
- "fp32 + channels_last": the same in NHWC (measured, not the default: see DiffAE).
- "bf16 autocast": float32 weights under torch.autocast(bfloat16): the previous bf16 mode.
- "bf16 weights, NCHW": DiffAE(precision="bfloat16") forced to NCHW.
- "bf16 facade (NHWC)": DiffAE(precision="bfloat16") as shipped: weights converted once to
  bf16 (norms and the eps layer float32), no autocast, cached conditioning, channels-last
  on the CPU. On CUDA the same rows for fp16.
- "bf16 facade + compile" (--compile): torch.compile (inductor, frozen weights) of that
  UNet's plain forward; its compile time is in the last column.
- "fp16 + CUDA graph" (CUDA only): the fp16 UNet captured once and replayed.

GFLOP/s is achieved FLOPs (torch.utils.flop_counter) per second of UNet forward, printed
beside this machine's measured float32 and bf16 (fp16 on CUDA) matmul rates. PSNR is of the
variant's render against the fp32 eager render of the same x_T, z_sem and T.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from _bench import (
    CONFIG_ALIASES,
    adaptive_time,
    count_flops,
    fast_precisions,
    machine_line,
    matmul_rate,
    median_time,
    pick_device,
    random_model,
    seconds,
    table,
    timed,
)

from diffae_app import DiffAE
from diffae_app.diffusion import ddim_invert, ddim_sample
from diffae_app.metrics import pooled_psnr_db


@dataclass
class Variant:
    """One way of running the model: how to call the UNet, render and invert."""

    name: str
    model: DiffAE
    unet: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
    render: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor] | None
    invert: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor] | None
    encode: Callable[[torch.Tensor], torch.Tensor] | None
    grad_context: Callable[[], object] = torch.inference_mode
    setup_seconds: float = 0.0
    layout: torch.memory_format = torch.contiguous_format


def eager_variants(fp32: DiffAE) -> list[Variant]:
    """The float32 baseline (plain forward, no_grad) and the fp32 facade."""
    net = fp32.autoencoder

    def plain_render(x_T: torch.Tensor, z_sem: torch.Tensor, steps: int) -> torch.Tensor:
        x_0 = ddim_sample(fp32.noise_predictor(), x_T, fp32._schedule(steps), cond=z_sem)
        return ((x_0 + 1) / 2).clamp(0, 1)

    def plain_invert(x: torch.Tensor, z_sem: torch.Tensor, steps: int) -> torch.Tensor:
        return ddim_invert(fp32.noise_predictor(), x, fp32._schedule(steps), cond=z_sem)

    return [
        Variant(
            "fp32 eager",
            fp32,
            net,
            plain_render,
            plain_invert,
            lambda x: net.encoder(x),
            grad_context=torch.no_grad,
        ),
        Variant(
            "fp32 facade",
            fp32,
            cached_unet(fp32),
            fp32.render,
            lambda x, z, k: fp32.encode_stochastic(x, z, k),
            fp32.encode,
        ),
    ]


def cached_unet(
    model: DiffAE,
) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """UNet forward with the conditioning projections prepared once per (t, z_sem), as in a
    render (their cost is then spread over T steps; it is part of the render timings)."""
    net = model.autoencoder
    cache: dict[str, object] = {}

    def call(x: torch.Tensor, t: torch.Tensor, z_sem: torch.Tensor) -> torch.Tensor:
        if cache.get("t") is not t or cache.get("z_sem") is not z_sem:
            cache.update(t=t, z_sem=z_sem)
            cache["time"] = net.prepare_time(t[:1])
            cache["z"] = net.prepare_z_sem(z_sem)
        return net(x, time_projections=cache["time"], z_sem_projections=cache["z"])

    return call


def autocast_variant(fp32: DiffAE, dtype: torch.dtype) -> Variant:
    net = fp32.autoencoder
    device_type = fp32.device.type

    def unet(x: torch.Tensor, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type, dtype=dtype):
            return net(x, t, z).float()

    def render(x_T: torch.Tensor, z_sem: torch.Tensor, steps: int) -> torch.Tensor:
        x_0 = ddim_sample(unet, x_T, fp32._schedule(steps), cond=z_sem)
        return ((x_0 + 1) / 2).clamp(0, 1)

    def encode(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type, dtype=dtype):
            return net.encoder(x).float()

    short = "bf16" if dtype == torch.bfloat16 else "fp16"
    return Variant(f"{short} autocast", fp32, unet, render, None, encode)


def facade_variant(model: DiffAE, name: str) -> Variant:
    return Variant(
        name,
        model,
        cached_unet(model),
        model.render,
        lambda x, z, k: model.encode_stochastic(x, z, k),
        model.encode,
        layout=model.memory_format,
    )


def layout_variant(model: DiffAE, name: str, memory_format: torch.memory_format) -> Variant:
    """The facade with its weights and inputs switched to another memory layout."""
    model.memory_format = memory_format
    model.autoencoder.to(memory_format=memory_format)
    return facade_variant(model, name)


def compiled_variant(model: DiffAE, name: str, sample: tuple[torch.Tensor, ...]) -> Variant:
    """torch.compile (inductor) of the UNet's plain forward, weights frozen into the graph
    (inductor's `freezing`: constant-folds them and pre-packs oneDNN convolutions; without
    it the compiled UNet was 1.2x slower here). setup_seconds = first call (compile) time."""
    import torch._inductor.config

    torch._inductor.config.freezing = True
    compiled = torch.compile(model.autoencoder, dynamic=False)
    x, t, z = sample
    x = x.contiguous(memory_format=model.memory_format)
    with torch.inference_mode():
        seconds_first, _ = timed(lambda: compiled(x, t, z), model.device)
    return Variant(
        name,
        model,
        compiled,
        None,
        None,
        None,
        setup_seconds=seconds_first,
        layout=model.memory_format,
    )


def cuda_graph_variant(model: DiffAE, name: str, sample: tuple[torch.Tensor, ...]) -> Variant:
    """Capture the UNet once for fixed shapes; each call copies inputs in and replays."""
    net = model.autoencoder
    static = [s.clone() for s in sample]
    with torch.inference_mode():
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):
                net(*static)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = net(*static)

    def replay(x: torch.Tensor, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        for target, value in zip(static, (x, t, z), strict=True):
            target.copy_(value)
        graph.replay()
        return out

    return Variant(name, model, replay, None, None, None)


def run_config(args: argparse.Namespace, config_name: str, rates: dict[str, float]) -> None:
    device = pick_device(args.device)
    fp32 = random_model(config_name, precision="float32", device=device)
    size = fp32.image_size
    flops_unet, flops_encoder = count_flops_meta(fp32)
    variants = eager_variants(fp32)
    if device.type == "cpu":
        model = random_model(config_name, precision="float32", device=device)
        variants.append(layout_variant(model, "fp32 + channels_last", torch.channels_last))
    for precision in fast_precisions(device):
        dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}[precision]
        short = "bf16" if dtype == torch.bfloat16 else "fp16"
        variants.append(autocast_variant(fp32, dtype))
        if device.type == "cpu":
            model = random_model(config_name, precision=precision, device=device)
            variants.append(
                layout_variant(model, f"{short} weights, NCHW", torch.contiguous_format)
            )
        model = random_model(config_name, precision=precision, device=device)
        layout = "NHWC" if model.memory_format == torch.channels_last else "NCHW"
        variants.append(facade_variant(model, f"{short} facade ({layout})"))
    print(
        f"\n## {config_name} ({CONFIG_ALIASES.get(config_name, config_name)}), {size} px: "
        f"UNet {flops_unet / 1e9:.1f} GFLOP, encoder {flops_encoder / 1e9:.1f} GFLOP per image"
    )
    rows = []
    for batch in args.batches:
        gen = torch.Generator().manual_seed(batch)
        x = (torch.rand(batch, 3, size, size, generator=gen) * 2 - 1).to(device)
        x_T = torch.randn(batch, 3, size, size, generator=gen).to(device)
        z = torch.randn(batch, fp32.config.autoencoder.z_sem_channels, generator=gen).to(device)
        t = torch.full((batch,), 500, dtype=torch.int64, device=device)
        batch_variants = list(variants)
        if args.compile:
            model = random_model(config_name, precision="bfloat16", device=device)
            batch_variants.append(compiled_variant(model, "bf16 facade + compile", (x, t, z)))
        if device.type == "cuda":
            model = random_model(config_name, precision="float16", device=device)
            batch_variants.append(cuda_graph_variant(model, "fp16 + CUDA graph", (x, t, z)))
        reference_render = None
        base: dict[str, float] = {}
        for variant in batch_variants:
            enc, fwd, render_s, inv, image = measure(variant, args, device, batch, x, x_T, z, t)
            if variant.name == "fp32 eager":
                base = {"enc": enc, "fwd": fwd, "render": render_s, "inv": inv}
                reference_render = image
            fidelity = (
                pooled_psnr_db(image, reference_render)
                if image is not None and reference_render is not None
                else math.nan
            )
            gflops = flops_unet * batch / fwd / 1e9
            rows.append(
                [
                    batch,
                    variant.name,
                    seconds(enc),
                    seconds(fwd),
                    f"{base['fwd'] / fwd:.2f}×",
                    f"{gflops:.0f}",
                    f"{100 * gflops / rates['fp32']:.0f}%",
                    f"{100 * gflops / rates['fast']:.0f}%",
                    seconds(render_s),
                    f"{base['render'] / render_s:.2f}×" if not math.isnan(render_s) else "-",
                    seconds(render_s / batch) if not math.isnan(render_s) else "-",
                    seconds(inv),
                    f"{fidelity:.1f}" if not math.isnan(fidelity) else "-",
                    seconds(variant.setup_seconds) if variant.setup_seconds else "",
                ]
            )
            print(f"  [{config_name} b{batch}] {variant.name}: fwd {seconds(fwd)}", flush=True)
    print()
    print(
        table(
            [
                "batch",
                "variant",
                "encoder",
                "UNet fwd",
                "× fp32",
                "GFLOP/s",
                "% fp32 mm",
                f"% {rates['fast_name']} mm",
                f"render T={args.render_steps}",
                "× fp32",
                "per image",
                "inversion/step",
                "PSNR dB",
                "compile",
            ],
            rows,
        )
    )


def measure(
    variant: Variant,
    args: argparse.Namespace,
    device: torch.device,
    batch: int,
    x: torch.Tensor,
    x_T: torch.Tensor,
    z: torch.Tensor,
    t: torch.Tensor,
) -> tuple[float, float, float, float, torch.Tensor | None]:
    """(encoder s, UNet forward s, render s, inversion s per step, rendered images)."""
    xs = x.contiguous(memory_format=variant.layout)
    with variant.grad_context():
        enc = math.nan
        if variant.encode is not None:
            enc = median_time(lambda: variant.encode(xs), device, args.repeats)
        fwd = median_time(lambda: variant.unet(xs, t, z), device, args.repeats)
        render_s, image = math.nan, None
        if variant.render is not None and batch in args.render_batches:
            render_s, image = adaptive_time(
                lambda: variant.render(x_T, z, args.render_steps), device
            )
        inv = math.nan
        if variant.invert is not None and args.inversion_steps:
            k = args.inversion_steps
            inv = adaptive_time(lambda: variant.invert(x, z, k), device, budget=5.0)[0] / k
    return enc, fwd, render_s, inv, image


def thread_study(args: argparse.Namespace, config_name: str) -> None:
    """UNet forward at batch 1 for each intra-op thread count (same process, same inputs)."""
    device = pick_device(args.device)
    if device.type != "cpu":
        return
    counts = sorted({1, max(1, (os.cpu_count() or 2) // 2), os.cpu_count() or 2})
    previous = torch.get_num_threads()
    rows = []
    for precision in ["float32", *fast_precisions(device)]:
        model = random_model(config_name, precision=precision, device=device)
        size = model.image_size
        x = torch.randn(1, 3, size, size).contiguous(memory_format=model.memory_format)
        t = torch.full((1,), 500)
        z = torch.randn(1, model.config.autoencoder.z_sem_channels)
        forward = functools.partial(model.autoencoder, x, t, z)
        times = {}
        with torch.inference_mode():
            for count in counts:
                torch.set_num_threads(count)
                times[count] = median_time(forward, device, args.repeats)
        rows.append(
            [precision]
            + [seconds(times[c]) for c in counts]
            + [f"{times[counts[0]] / times[counts[-1]]:.2f}×"]
        )
    torch.set_num_threads(previous)
    print(f"\nthreads, {config_name} UNet forward, batch 1:")
    print(
        table(
            ["precision", *[f"{c} thread{'s' if c > 1 else ''}" for c in counts], "speed-up"],
            rows,
        )
    )


def count_flops_meta(model: DiffAE) -> tuple[int, int]:
    """(UNet, encoder) FLOPs per image, counted on a meta-device copy (no arithmetic done)."""
    from diffae_app.models import AutoencoderNet

    config = model.config.autoencoder
    with torch.device("meta"):
        net = AutoencoderNet(config)
        x = torch.empty(1, 3, config.image_size, config.image_size)
        t = torch.zeros(1, dtype=torch.int64)
        z = torch.empty(1, config.z_sem_channels)
        return count_flops(lambda: net(x, t, z)), count_flops(lambda: net.encoder(x))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=["synthfaces64", "ffhq128", "ffhq256"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--render-batches", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--render-steps", type=int, default=20)
    parser.add_argument("--inversion-steps", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--thread-study", action="store_true", help="also time 1..N intra-op threads"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    print("# model_speed:", machine_line())
    fast = fast_precisions(device)[0]
    fast_dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}[fast]
    rates = {
        "fp32": matmul_rate(torch.float32, device),
        "fast": matmul_rate(fast_dtype, device),
        "fast_name": "bf16" if fast == "bfloat16" else "fp16",
    }
    print(
        f"measured matmul (2048³, median): float32 {rates['fp32']:.0f} GFLOP/s, "
        f"{rates['fast_name']} {rates['fast']:.0f} GFLOP/s"
    )
    start = time.perf_counter()
    for name in args.configs:
        run_config(args, name, rates)
        if args.thread_study:
            thread_study(args, name)
    print(f"\n(total {time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
