"""Draw the model card's before/after grid: the same edits by two bundles, side by side.

    python scripts/before_after_grid.py BEFORE AFTER OUT.png [--faces 2] [--scale 2]

One row per attribute. For each of ``--faces`` held-out SynthFaces lacking the attribute, the
columns are: the drawn face | BEFORE's reconstruction | BEFORE's edit | AFTER's reconstruction
| AFTER's edit. Each bundle adds the attribute at its own calibrated full strength (stored by
``python -m diffae_app.evaluate --write``), from the face's own inverted x_T, exactly as the
evaluation's editing section does, so the picture shows what the numbers measure.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch
from PIL import Image, ImageDraw

from diffae_app.data.synthfaces import ATTRIBUTES, HELDOUT_SEED_START
from diffae_app.diffae import DiffAE
from diffae_app.editing import edit_z_sem
from diffae_app.evaluate import EvalOptions, faces_with_attributes

LABEL_WIDTH = 150  # px for the attribute names on the left
HEADER_HEIGHT = 18


def pick_faces(per_attribute: int, pool: int = 200) -> dict[str, list[int]]:
    """The first `per_attribute` held-out seeds lacking each attribute (seed order)."""
    seeds = list(range(HELDOUT_SEED_START, HELDOUT_SEED_START + pool))
    _, truth = faces_with_attributes(seeds, 64)
    return {
        name: [seeds[i] for i in np.flatnonzero(~truth[:, j])[:per_attribute]]
        for j, name in enumerate(ATTRIBUTES)
    }


@torch.no_grad()
def edits(model: DiffAE, seeds: list[int], name: str, steps: int) -> tuple[torch.Tensor, ...]:
    """(drawn faces, reconstructions, edits) in [0, 1] for `seeds`, adding `name`."""
    classifier = next(iter(model.classifiers.values()))
    full = classifier.metrics.get("_full_strength", {}).get(name)
    if full is None:
        raise SystemExit(
            f"error: {model.source} stores no full strength for {name}; run evaluate --write"
        )
    x, _ = faces_with_attributes(seeds, model.image_size)
    z = model.encode(x)
    x_T = model.encode_stochastic(x, z, T=steps)
    recon = model.render(x_T, z, T=steps)
    edited = model.render(x_T, edit_z_sem(z, classifier, {name: full}), T=steps)
    return (x + 1) / 2, recon, edited


def _tiles(images: torch.Tensor, size: int) -> list[Image.Image]:
    pixels = (images.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
    # Nearest-neighbour: enlarged for legibility without inventing detail.
    return [Image.fromarray(p).resize((size, size), Image.Resampling.NEAREST) for p in pixels]


def draw_grid(before: DiffAE, after: DiffAE, faces: int, scale: int = 2) -> Image.Image:
    size = after.image_size * scale
    steps = EvalOptions().T_render
    chosen = pick_faces(faces)
    columns = ["face", "before", "before +", "after", "after +"] * faces
    grid = Image.new(
        "RGB", (LABEL_WIDTH + size * len(columns), HEADER_HEIGHT + size * len(ATTRIBUTES)), "white"
    )
    pen = ImageDraw.Draw(grid)
    for c, label in enumerate(columns):
        pen.text((LABEL_WIDTH + c * size + 3, 3), label, fill="black")
    for r, name in enumerate(ATTRIBUTES):
        top = HEADER_HEIGHT + r * size
        pen.text((4, top + size // 2 - 6), f"+{name}", fill="black")
        drawn, before_recon, before_edit = edits(before, chosen[name], name, steps)
        _, after_recon, after_edit = edits(after, chosen[name], name, steps)
        for f in range(len(chosen[name])):
            row = [drawn[f], before_recon[f], before_edit[f], after_recon[f], after_edit[f]]
            for c, tile in enumerate(_tiles(torch.stack(row), size)):
                grid.paste(tile, (LABEL_WIDTH + (f * 5 + c) * size, top))
    return grid


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", help="bundle folder of the previous model")
    parser.add_argument("after", help="bundle folder of the new model")
    parser.add_argument("out", help="PNG to write")
    parser.add_argument("--faces", type=int, default=2, help="held-out faces per attribute")
    parser.add_argument("--scale", type=int, default=2, help="pixels per model pixel")
    args = parser.parse_args(argv)
    before = DiffAE.from_pretrained(args.before, precision="float32")
    after = DiffAE.from_pretrained(args.after, precision="float32")
    if before.image_size != after.image_size:
        print("error: the two bundles draw different image sizes", file=sys.stderr)
        return 2
    draw_grid(before, after, args.faces, args.scale).save(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
