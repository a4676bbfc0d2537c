"""Fidelity against speed: reconstruction PSNR for every (T_inv, T_render) pair.

    python benchmarks/fidelity_study.py [--model assets/models/synthfaces64] [--images 8]
        [--steps 5 10 20 50 100 250] [--precisions bfloat16 float32]

For held-out SynthFaces images (seeds from HELDOUT_SEED_START, never trained on) at the model's
size: z_sem = encode(x), x_T = encode_stochastic(x, z_sem, T_inv), image =
render(x_T, z_sem, T_render), PSNR(image, x) in dB (mean over images). Every T_inv × T_render
cell is printed, with the time per image of the inversion and of the render, so presets can
be read off: the diagonal T_inv = T_render, and the official habit (250, 20) for reference.

With two precisions, the bf16 cells are also compared with the float32 ones, and a
"same inputs" PSNR is printed: bf16 render against float32 render of the *same* x_T and
z_sem (the fidelity of the arithmetic alone, target >= 40 dB).

    python benchmarks/fidelity_study.py --solvers [--images 8] [--precisions bfloat16]

compares solvers instead (DDIM with fixed-point inversion, DDIM with the extrapolated
inversion, DPM-Solver++(2M); see SamplerConfig.solver) at chosen (T_inv, T_render) pairs, on
the held-out faces and on the real portraits (skimage astronaut, matplotlib grace_hopper,
detected and aligned by the studio): reconstruction PSNR, UNet calls counted by a hook on the
decoder (upload = inversion + first render, slider = one render) and seconds per image.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
from _bench import (
    BUNDLED_MODEL,
    CONFIG_ALIASES,
    UNetCalls,
    fast_precisions,
    machine_line,
    pick_device,
    random_model,
    table,
)

from diffae_app import DiffAE
from diffae_app.config import OFFICIAL_SAMPLER, SamplerConfig
from diffae_app.data.synthfaces import HELDOUT_SEED_START, generate
from diffae_app.metrics import pooled_psnr_db

OFFICIAL_HABIT = (250, 20)


def heldout_images(count: int, size: int) -> torch.Tensor:
    """(count, 3, size, size) in [-1, 1]: held-out SynthFaces faces."""
    faces = [generate(HELDOUT_SEED_START + i, size=size)[0] for i in range(count)]
    array = np.stack(faces).astype(np.float32) / 127.5 - 1
    return torch.from_numpy(array).permute(0, 3, 1, 2).contiguous()


def load(model: str, precision: str, device: torch.device, sampler: str = "model") -> DiffAE:
    if model in CONFIG_ALIASES:
        loaded = random_model(model, precision=precision, device=device)
    else:
        loaded = DiffAE.from_pretrained(model, precision=precision, device=device)
    return loaded.with_sampler(OFFICIAL_SAMPLER) if sampler == "official" else loaded


def study(
    model: DiffAE, x: torch.Tensor, steps: list[int], batch: int
) -> tuple[dict, dict, dict, dict]:
    """PSNR[(T_inv, T_render)] (per-image mean), seconds per image for inversions and renders,
    and the x_T per T_inv (for same-input comparisons)."""
    x = x.to(model.device)
    target = (x + 1) / 2
    z_sem = torch.cat([model.encode(x[i : i + batch]) for i in range(0, len(x), batch)])
    quality, inv_s, render_s, codes = {}, {}, {}, {}
    for T_inv in steps:
        start = time.perf_counter()
        x_T = torch.cat(
            [
                model.encode_stochastic(x[i : i + batch], z_sem[i : i + batch], T=T_inv)
                for i in range(0, len(x), batch)
            ]
        )
        inv_s[T_inv] = (time.perf_counter() - start) / len(x)
        codes[T_inv] = (x_T, z_sem)
        for T_render in steps:
            start = time.perf_counter()
            images = torch.cat(
                [
                    model.render(x_T[i : i + batch], z_sem[i : i + batch], T=T_render)
                    for i in range(0, len(x), batch)
                ]
            )
            render_s.setdefault(T_render, []).append((time.perf_counter() - start) / len(x))
            quality[(T_inv, T_render)] = float(
                np.mean([pooled_psnr_db(images[i], target[i]) for i in range(len(x))])
            )
            print(
                f"  T_inv {T_inv:>3} T_render {T_render:>3}: {quality[(T_inv, T_render)]:.2f} dB",
                flush=True,
            )
    render_s = {k: float(np.median(v)) for k, v in render_s.items()}
    return quality, inv_s, render_s, codes


def grid_table(quality: dict, steps: list[int], inv_s: dict, render_s: dict) -> str:
    headers = ["T_inv \\ T_render"] + [f"{t} ({render_s[t] * 1000:.0f} ms)" for t in steps]
    rows = []
    for T_inv in steps:
        row = [f"{T_inv} ({inv_s[T_inv] * 1000:.0f} ms)"]
        for T_render in steps:
            value = f"{quality[(T_inv, T_render)]:.2f}"
            if T_inv == T_render:
                value = f"**{value}**"
            if (T_inv, T_render) == OFFICIAL_HABIT:
                value = f"_{value}_ (official)"
            row.append(value)
        rows.append(row)
    return table(headers, rows)


# (label, solver, power, fixed-point iterations, T_inv, T_render): today's default first.
SOLVER_ROWS = [
    ("former default: DDIM + fixed-point inversion", "ddim", 1.25, 1, 20, 20),
    ("DDIM + fixed-point inversion", "ddim", 1.25, 1, 10, 10),
    ("DDIM + released inversion", "ddim", 1.25, 0, 10, 10),
    ("DDIM + extrapolated inversion", "ddim_extrapolated", 1.25, 0, 10, 10),
    ("DDIM + extrapolated inversion", "ddim_extrapolated", 1.5, 0, 10, 10),
    ("DPM-Solver++(2M) both ways", "dpmpp_2m", 1.25, 0, 10, 10),
    ("DPM-Solver++(2M) both ways", "dpmpp_2m", 2.0, 0, 10, 10),
    ("DDIM + extrapolated inversion", "ddim_extrapolated", 1.25, 0, 15, 15),
    ("DDIM + extrapolated inversion", "ddim_extrapolated", 1.25, 0, 16, 16),
    ("DDIM + extrapolated inversion", "ddim_extrapolated", 1.25, 0, 20, 20),
    ("DPM-Solver++(2M) both ways", "dpmpp_2m", 2.0, 0, 20, 20),
]


def portrait_images(model_path: str, size: int) -> torch.Tensor:
    """The project's real portraits, detected and aligned by the studio: (2, 3, S, S)."""
    from matplotlib import cbook
    from PIL import Image
    from skimage import data

    from diffae_app.imaging import image_to_tensor
    from diffae_app.studio import Studio

    studio = Studio.load(model_path)
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        hopper = Image.open(f).convert("RGB")
    photos = [Image.fromarray(data.astronaut()), hopper]
    crops = [studio.encode_photo(photo, T_inv=2).crop for photo in photos]
    return torch.stack([image_to_tensor(c.resize((size, size))) for c in crops])


def solver_study(model: DiffAE, sets: dict[str, torch.Tensor]) -> list[list]:
    """One row per SOLVER_ROWS entry: calls, seconds per image and PSNR per image set."""
    counter = UNetCalls(model)
    first = next(iter(sets.values()))[:1].to(model.device)
    model.render(model.encode_stochastic(first, model.encode(first), T=2), model.encode(first), 2)
    rows = []
    for label, solver, power, iterations, T_inv, T_render in SOLVER_ROWS:
        sampler = SamplerConfig(
            spacing="power", power=power, inversion_fixed_point_iterations=iterations, solver=solver
        )
        variant = model.with_sampler(sampler)
        row = [f"{label}, power {power}", f"({T_inv}, {T_render})"]
        quality, times = [], []
        for x in sets.values():
            x = x.to(model.device)
            z_sem = variant.encode(x)
            counter.take()
            start = time.perf_counter()
            x_T = variant.encode_stochastic(x, z_sem, T=T_inv)
            middle = time.perf_counter()
            images = variant.render(x_T, z_sem, T=T_render)
            end = time.perf_counter()
            inversion_calls = counter.take() - T_render
            target = (x + 1) / 2
            quality.append(
                float(np.mean([pooled_psnr_db(images[i], target[i]) for i in range(len(x))]))
            )
            times.append(((middle - start) / len(x), (end - middle) / len(x)))
        inv_s, render_s = np.mean([t[0] for t in times]), np.mean([t[1] for t in times])
        row += [
            inversion_calls + T_render,
            T_render,
            *[f"{q:.2f}" for q in quality],
            f"{(inv_s + render_s) * 1000:.0f} ms",
            f"{render_s * 1000:.0f} ms",
        ]
        rows.append(row)
        print("  " + " | ".join(str(v) for v in row), flush=True)
    counter.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(BUNDLED_MODEL))
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", nargs="+", type=int, default=[5, 10, 20, 50, 100, 250])
    parser.add_argument(
        "--precisions", nargs="+", default=None, help="default: the device's fast ones, float32"
    )
    parser.add_argument(
        "--sampler",
        choices=["model", "official"],
        default="model",
        help="the bundle's own image sampler, or the official one (uniform, plain inversion)",
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--solvers", action="store_true", help="the solver study (see the module docstring)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print("# fidelity_study:", machine_line())
    if args.solvers:
        device = pick_device(args.device)
        for precision in args.precisions or fast_precisions(device):
            model = load(args.model, precision, device)
            sets = {"held-out": heldout_images(args.images, model.image_size)}
            if args.model not in CONFIG_ALIASES:
                sets["portraits"] = portrait_images(args.model, model.image_size)
            print(f"\n### solvers, {precision}; images: {', '.join(sets)}")
            rows = solver_study(model, sets)
            headers = ["sampler", "(T_inv, T_render)", "upload calls", "slider calls"]
            headers += [f"PSNR dB {name}" for name in sets]
            headers += ["upload s/image", "slider s/image"]
            print()
            print(table(headers, rows))
        return
    print(f"model: {args.model}; {args.images} held-out SynthFaces images; PSNR vs the input")
    device = pick_device(args.device)
    precisions = args.precisions or [*fast_precisions(device), "float32"]
    results = {}
    for precision in precisions:
        model = load(args.model, precision, device, args.sampler)
        if not results:
            print(f"sampler ({args.sampler}): {model.config.sampler}")
        x = heldout_images(args.images, model.image_size)
        print(f"\n### {precision}")
        results[precision] = study(model, x, args.steps, args.batch)
        quality, inv_s, render_s, _ = results[precision]
        print()
        print(
            "reconstruction PSNR (dB) vs the input; bold: T_inv = T_render; "
            "in brackets: seconds per image of that inversion / render"
        )
        print(grid_table(quality, args.steps, inv_s, render_s))
        habit = quality[OFFICIAL_HABIT] if OFFICIAL_HABIT in quality else math.nan
        rows = [
            [f"({t}, {t})", f"{quality[(t, t)]:.2f}", f"{quality[(t, t)] - habit:+.2f}"]
            for t in args.steps
        ]
        print()
        print(table(["(T_inv, T_render)", "PSNR dB", "vs official (250, 20)"], rows))
    fast_name = next((p for p in precisions if p != "float32"), None)
    if fast_name is not None and "float32" in results:
        fast, ref = results[fast_name], results["float32"]
        reference = load(args.model, "float32", device, args.sampler)
        bf16 = load(args.model, fast_name, device, args.sampler)
        rows = []
        for T in [t for t in (10, 20, 50) if t in args.steps]:
            x_T, z_sem = ref[3][T]
            same = pooled_psnr_db(bf16.render(x_T, z_sem, T=T), reference.render(x_T, z_sem, T=T))
            rows.append(
                [
                    T,
                    f"{same:.1f}",
                    f"{fast[0][(T, T)]:.2f}",
                    f"{ref[0][(T, T)]:.2f}",
                    f"{ref[2][T] / fast[2][T]:.2f}×",
                    f"{ref[1][T] / fast[1][T]:.2f}×",
                ]
            )
        print()
        print(
            table(
                [
                    "T",
                    f"{fast_name} vs fp32 render, same x_T and z_sem (dB)",
                    f"{fast_name} recon PSNR (T, T)",
                    "fp32 recon PSNR (T, T)",
                    "render speed-up",
                    "inversion speed-up",
                ],
                rows,
            )
        )


if __name__ == "__main__":
    main()
