"""How long detection, landmarks, alignment and paste-back take on a 2-megapixel photo.

The photo is built from the sample photos installed with scikit-image (astronaut) and
matplotlib (Grace Hopper), side by side and enlarged to ~2 Mpx, so nothing is downloaded.
Every available backend is measured; face-alignment only when its weights are in
``$TORCH_HOME/hub/checkpoints``, or, with ``--fan-random-weights``, with random weights of the
right shapes in a temporary folder (its network timings are then real, but S3FD's box decoding
is not: random weights produce thousands of boxes, so that row reports landmarks only).

    python benchmarks/align_speed.py [--repeats 5] [--fan-random-weights]

Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from matplotlib import cbook
from PIL import Image
from skimage import data as skimage_data

from diffae_app.align import (
    FAN_WEIGHT_FILES,
    DetectorUnavailable,
    DlibDetector,
    FanDetector,
    LandmarkDetector,
    align_face,
    detect_faces,
    fan_weights,
    paste_back,
)
from diffae_app.imaging import load_image


def two_megapixel_photo() -> Image.Image:
    """Astronaut and Grace Hopper side by side, enlarged to about 2.0 Mpx (1925×1039)."""
    astronaut = Image.fromarray(skimage_data.astronaut())
    grace = load_image(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    grace = grace.resize((round(grace.width * 512 / grace.height), 512), Image.Resampling.LANCZOS)
    pair = Image.new("RGB", (astronaut.width + grace.width, 512))
    pair.paste(astronaut, (0, 0))
    pair.paste(grace, (astronaut.width, 0))
    scale = (2_000_000 / (pair.width * pair.height)) ** 0.5
    size = (round(pair.width * scale), round(pair.height * scale))
    return pair.resize(size, Image.Resampling.LANCZOS)


def median_seconds(function: Callable[[], object], repeats: int) -> float:
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        timings.append(time.perf_counter() - start)
    return statistics.median(timings)


def write_random_fan_weights(folder: Path) -> None:
    import torch
    from face_alignment.detection.sfd.net_s3fd import s3fd
    from face_alignment.models import FAN

    def random_like(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {
            key: (
                torch.zeros(value.shape, dtype=value.dtype)
                if not value.dtype.is_floating_point
                else torch.rand(value.shape) + 0.5
                if key.endswith("running_var")
                else torch.randn(value.shape) * 0.01
            )
            for key, value in state.items()
        }

    with torch.device("meta"):
        detector_state, landmark_state = s3fd().state_dict(), FAN(4).state_dict()
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(random_like(detector_state), folder / FAN_WEIGHT_FILES[0])
    torch.save(random_like(landmark_state), folder / FAN_WEIGHT_FILES[1])


def measure(
    detector: LandmarkDetector, photo: Image.Image, repeats: int, random_weights: bool
) -> dict[str, str]:
    pixels = np.asarray(photo)
    start = time.perf_counter()
    # First use loads the models (and for face-alignment compiles numba kernels).
    detector.landmarks(pixels, (600.0, 150.0, 900.0, 450.0))
    load = time.perf_counter() - start

    reference = detect_faces(photo, DlibDetector()) if random_weights else None
    if random_weights:
        faces = reference
        detect = "n/a (random weights)"
    else:
        faces = detect_faces(photo, detector)
        total = median_seconds(lambda: detect_faces(photo, detector), repeats)
    face = faces[0]
    landmarks = median_seconds(lambda: detector.landmarks(pixels, face.box), repeats)
    if not random_weights:
        detect = f"{total - landmarks * len(faces):.3f}"
    align_256 = median_seconds(lambda: align_face(photo, face, 256), repeats)
    align_1024 = median_seconds(lambda: align_face(photo, face, 1024), repeats)
    aligned = align_face(photo, face, 256)
    paste = median_seconds(lambda: paste_back(photo, aligned, aligned.image), repeats)
    if random_weights:
        end_to_end = "n/a"
    else:
        end_to_end = f"{total + align_256:.3f}"
    return {
        "backend": detector.name,
        "first call": f"{load:.2f}",
        "faces": str(len(faces)),
        "detect": detect,
        "landmarks/face": f"{landmarks:.3f}",
        "align 256": f"{align_256:.3f}",
        "align 1024": f"{align_1024:.3f}",
        "paste 256": f"{paste:.3f}",
        "detect+align 256": end_to_end,
    }


def print_table(rows: list[dict[str, str]]) -> None:
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(row[c]) for row in rows)) for c in columns}
    print(" | ".join(c.ljust(widths[c]) for c in columns))
    print("-+-".join("-" * widths[c] for c in columns))
    for row in rows:
        print(" | ".join(row[c].ljust(widths[c]) for c in columns))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per step (median)")
    parser.add_argument(
        "--fan-random-weights",
        action="store_true",
        help="time face-alignment with random weights in a temporary TORCH_HOME",
    )
    args = parser.parse_args()

    photo = two_megapixel_photo()
    print(
        f"photo: {photo.width}×{photo.height} = {photo.width * photo.height / 1e6:.2f} Mpx "
        f"(skimage astronaut + matplotlib grace_hopper); {os.cpu_count()} CPU cores; "
        f"median of {args.repeats}; seconds"
    )
    rows = [measure(DlibDetector(), photo, args.repeats, random_weights=False)]

    with tempfile.TemporaryDirectory() as scratch:
        if args.fan_random_weights:
            os.environ["TORCH_HOME"] = scratch
            write_random_fan_weights(Path(scratch) / "hub" / "checkpoints")
            # Stand-in weights cannot match the published sha256 the detector checks: timing
            # only, so that check is skipped here (and only here).
            fan_weights.check_fan_weights = lambda path: None
        try:
            fan = FanDetector()
        except DetectorUnavailable as error:
            print(f"face_alignment not measured: {error}")
        else:
            rows.append(measure(fan, photo, args.repeats, random_weights=args.fan_random_weights))
    print_table(rows)


if __name__ == "__main__":
    main()
