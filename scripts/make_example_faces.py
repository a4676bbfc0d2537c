"""Draw the example faces the app ships in assets/examples/ (run once; the PNGs are committed).

    python scripts/make_example_faces.py [FOLDER]      # default: assets/examples

The app never runs this: it reads the files (``diffae_app.ui.examples``). The faces come from
the SynthFaces generator's held-out seed range (never training faces), picked for variety, all
found by the dlib detector; ``two_faces.png`` puts two of them side by side for the face picker.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from diffae_app.data.synthfaces import generate

REPO_ROOT = Path(__file__).resolve().parents[1]
# name -> SynthFaces seed, drawn at 256 px (about 12 kB each as PNG).
EXAMPLE_SEEDS: dict[str, int] = {
    "face_a": 10_000_033,  # smiling, open mouth, bangs, brown hair
    "face_b": 10_000_004,  # eyeglasses, grey hair, lipstick
    "face_c": 10_000_009,  # hat, black hair, smiling
    "face_d": 10_000_054,  # beard, black hair
}
EXAMPLE_SIZE = 256
PAIR = ("two_faces", "face_a", "face_d")  # file name, left face, right face


def write_example_faces(folder: Path) -> list[Path]:
    """Draw the example faces and the two-face picture into ``folder``; returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    faces = {name: generate(seed, size=EXAMPLE_SIZE)[0] for name, seed in EXAMPLE_SEEDS.items()}
    name, left, right = PAIR
    images = {**faces, name: np.concatenate([faces[left], faces[right]], axis=1)}
    paths = []
    for name, pixels in images.items():
        path = folder / f"{name}.png"
        Image.fromarray(pixels).save(path, optimize=True)
        paths.append(path)
    return paths


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO_ROOT / "assets" / "examples"
    for written in write_example_faces(target):
        print(written, written.stat().st_size, "bytes")
