"""Example faces for the Examples rows: image files shipped in assets/examples/, plus real
photographs that installed packages carry (written to a private temp folder of the process at
start-up, never committed to the repository).

The shipped PNGs are drawn once by ``scripts/make_example_faces.py`` (see
assets/examples/README.md); the app only reads them.
"""

from __future__ import annotations

import atexit
import functools
import logging
import shutil
import tempfile
from pathlib import Path

from PIL import Image

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES_DIR = REPO_ROOT / "assets" / "examples"

#: The example faces shipped as files (assets/examples/README.md says what drew them), in the
#: order the Examples row shows them; ``two_faces`` exercises the face picker.
SHIPPED_EXAMPLES = ("face_a", "face_b", "face_c", "face_d", "two_faces")


def shipped_examples(folder: Path = EXAMPLES_DIR) -> list[Path]:
    """The shipped example faces present on disk, in a stable order."""
    return [folder / f"{n}.png" for n in SHIPPED_EXAMPLES if (folder / f"{n}.png").is_file()]


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
