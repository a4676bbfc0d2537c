"""Example faces for the Examples rows: generated SynthFaces shipped in assets/examples/, plus
real photographs that installed packages carry (written to a private temp folder of the process at
start-up, never committed to the repository).

Regenerate the shipped PNGs with ``python -m diffae_app.ui.examples``.
"""

from __future__ import annotations

import atexit
import functools
import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES_DIR = REPO_ROOT / "assets" / "examples"

# Seeds from the held-out range of SynthFaces (never training faces), picked for variety:
# name -> seed. Written at 256 px (a few kB each as PNG).
# All are found by the dlib detector (about a third of SynthFaces are).
EXAMPLE_SEEDS: dict[str, int] = {
    "face_a": 10_000_033,  # smiling, open mouth, bangs, brown hair
    "face_b": 10_000_004,  # eyeglasses, grey hair, lipstick
    "face_c": 10_000_009,  # hat, black hair, smiling
    "face_d": 10_000_054,  # beard, black hair
}
EXAMPLE_SIZE = 256
GROUP_EXAMPLE = "two_faces"  # two SynthFaces side by side: exercises the face picker


def write_example_faces(folder: Path = EXAMPLES_DIR) -> list[Path]:
    """Draw the example faces (and the two-face picture) into ``folder``; returns the paths."""
    from diffae_app.data.synthfaces import generate

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    faces = {}
    for name, seed in EXAMPLE_SEEDS.items():
        pixels, _ = generate(seed, size=EXAMPLE_SIZE)
        faces[name] = pixels
        path = folder / f"{name}.png"
        Image.fromarray(pixels).save(path, optimize=True)
        paths.append(path)
    pair = np.concatenate([faces["face_a"], faces["face_d"]], axis=1)
    path = folder / f"{GROUP_EXAMPLE}.png"
    Image.fromarray(pair).save(path, optimize=True)
    paths.append(path)
    return paths


def shipped_examples(folder: Path = EXAMPLES_DIR) -> list[Path]:
    """The generated example faces present on disk, in a stable order."""
    names = [*EXAMPLE_SEEDS, GROUP_EXAMPLE]
    return [folder / f"{n}.png" for n in names if (folder / f"{n}.png").is_file()]


@functools.cache
def examples_root() -> Path:
    """This process's folder for the real-photo examples: ``tempfile.mkdtemp`` (mode 0700, a
    random name), so no other local user can plant a file the app would serve as an example;
    removed when the process exits."""
    root = Path(tempfile.mkdtemp(prefix="diffae-studio-examples-"))
    atexit.register(shutil.rmtree, root, True)
    return root


def real_photo_examples(folder: Path | None = None) -> list[Path]:
    """Real photographs from installed packages (scikit-image's astronaut, matplotlib's Grace
    Hopper), written as files the app may serve; missing packages are skipped silently."""
    folder = folder or examples_root()
    folder.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    astronaut = folder / "astronaut.png"
    try:
        if not astronaut.is_file():
            from skimage import data

            Image.fromarray(data.astronaut()).save(astronaut)
        paths.append(astronaut)
    except Exception as error:  # optional package: any failure only drops the example
        logger.info("no astronaut example: %s", error)
    hopper = folder / "grace_hopper.jpg"
    try:
        if not hopper.is_file():
            from matplotlib import cbook

            with cbook.get_sample_data("grace_hopper.jpg") as source:
                hopper.write_bytes(source.read())
        paths.append(hopper)
    except Exception as error:
        logger.info("no Grace Hopper example: %s", error)
    return paths


if __name__ == "__main__":
    for written in write_example_faces():
        print(written, written.stat().st_size, "bytes")
