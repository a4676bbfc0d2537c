"""How much a SynthFaces DiffAE's decoder reads z_sem, against the independent judge.

    python benchmarks/zsem_usage.py BUNDLE [BUNDLE ...] [--faces 64] [--steps 20]

A stage-1 bundle (autoencoder only) is enough, so a training cycle can be checked before
stages 2-4 are run on it. Per bundle, on held-out faces (the judge reads attributes off the
decoded pixels, see diffae_app/judge.py):

- recon PSNR: DDIM inversion + render at T_inv = T_render = steps, with the bundle's sampler;
- z_sem only: judge agreement with the true attributes when z_sem is decoded from random x_T;
- swap: face A's inverted x_T rendered under face B's z_sem; over the attributes where A and B
  differ, how often the judge sees B's value. 100% would mean x_T carries no attribute at all;
  editing needs the decoder to follow z_sem over an inverted x_T, so this is its proxy.

Bundles whose config predates samplers are run with the synthfaces64 preset's sampler.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _bench import machine_line, table

from diffae_app import DiffAE
from diffae_app.config import OFFICIAL_SAMPLER, preset
from diffae_app.data.synthfaces import ATTRIBUTES, HELDOUT_SEED_START
from diffae_app.evaluate import DEFAULT_JUDGE_DIR, faces_with_attributes
from diffae_app.judge import load_judge
from diffae_app.metrics import psnr_db


@torch.inference_mode()
def measure(path: str, judge, faces: int, steps: int, precision: str) -> dict[str, object]:
    model = DiffAE.from_pretrained(path, precision=precision)
    if model.config.sampler == OFFICIAL_SAMPLER:
        model = model.with_sampler(preset("synthfaces64").sampler)
    start = time.perf_counter()
    x, truth = faces_with_attributes(
        list(range(HELDOUT_SEED_START, HELDOUT_SEED_START + faces)), 64
    )
    z = model.encode(x)
    x_T = model.encode_stochastic(x, z, T=steps)
    recon = model.render(x_T, z, T=steps)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    z_only = model.render(noise, z, T=steps)
    partner = torch.roll(torch.arange(faces), 1)  # face i gets face i-1's z_sem
    swapped = model.render(x_T, z[partner], T=steps)

    def verdicts(images01: torch.Tensor) -> np.ndarray:
        return (judge.probabilities(images01 * 2 - 1) > 0.5).numpy()

    z_only_agree = verdicts(z_only) == truth
    partner_truth = truth[partner.numpy()]
    differs = partner_truth != truth
    follows = verdicts(swapped) == partner_truth
    per_attribute = {
        name: (float(z_only_agree[:, j].mean()), float(follows[differs[:, j], j].mean()))
        for j, name in enumerate(ATTRIBUTES)
        if differs[:, j].any()
    }
    return {
        "psnr": float(psnr_db(recon, (x + 1) / 2).mean()),
        "z_only": float(z_only_agree.mean()),
        "swap": float(follows[differs].mean()),
        "per_attribute": per_attribute,
        "seconds": time.perf_counter() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundles", nargs="+")
    parser.add_argument("--faces", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--precision", default="bfloat16", choices=["float32", "bfloat16"])
    args = parser.parse_args()
    print("# zsem_usage:", machine_line())
    judge, _ = load_judge(DEFAULT_JUDGE_DIR, min_accuracy=0.95)
    results = {
        path: measure(path, judge, args.faces, args.steps, args.precision) for path in args.bundles
    }
    print(f"\n{args.faces} held-out faces, T_inv = T_render = {args.steps}, {args.precision}\n")
    rows = [
        [
            path,
            f"{r['psnr']:.2f} dB",
            f"{r['z_only'] * 100:.1f}%",
            f"{r['swap'] * 100:.1f}%",
            f"{r['seconds']:.0f} s",
        ]
        for path, r in results.items()
    ]
    print(
        table(
            ["bundle", "recon PSNR", "z_sem only: judge agrees", "swap: follows z_sem", "time"],
            rows,
        )
    )
    print("\nPer attribute (z_sem only / swap):\n")
    names = [n for n in ATTRIBUTES if all(n in r["per_attribute"] for r in results.values())]
    rows = [
        [name]
        + [
            f"{r['per_attribute'][name][0] * 100:.0f}% / {r['per_attribute'][name][1] * 100:.0f}%"
            for r in results.values()
        ]
        for name in names
    ]
    print(table(["attribute", *results], rows))


if __name__ == "__main__":
    main()
