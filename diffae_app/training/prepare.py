"""Align a folder of raw photos into an FFHQ-aligned training set (train/prepare_data.py).

Every image below the source folder (recursive, any Pillow format) is loaded upright as RGB,
its best face detected and FFHQ-aligned at the requested size, and saved as PNG under the
same relative path. Photos without a usable face are counted and listed, never fatal; the
report is written next to the images as `prepare_report.json`.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..align import FaceTooSmall, LandmarkDetector, NoFaceFound, align_face, detect_faces
from ..imaging import ImageError, load_image
from .data import IMAGE_SUFFIXES, DatasetError

REPORT_NAME = "prepare_report.json"


@dataclass
class PrepareReport:
    """What happened to each photo (paths relative to the source folder)."""

    total: int = 0
    aligned: int = 0
    already_done: int = 0  # outputs present from an earlier, interrupted run
    several_faces: int = 0  # aligned the best face of a photo that holds more than one
    no_face: list[str] = field(default_factory=list)
    too_small: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"{self.aligned + self.already_done} of {self.total} photos aligned "
            f"({self.already_done} from an earlier run); {len(self.no_face)} had no face, "
            f"{len(self.too_small)} a face too small, {len(self.unreadable)} were unreadable"
        )


def list_images(root: Path, exclude: Path | None = None) -> list[Path]:
    """Image files below root (recursive, sorted), skipping anything under `exclude`."""
    exclude = exclude.resolve() if exclude is not None else None
    files = []
    for p in sorted(root.rglob("*")):
        if p.suffix.lower() not in IMAGE_SUFFIXES or not p.is_file():
            continue
        if exclude is not None and p.resolve().is_relative_to(exclude):
            continue
        files.append(p)
    return files


def output_names(files: list[Path], root: Path) -> list[Path]:
    """Relative output paths: the source path with a .png suffix, or with .png appended
    when two sources would collide (a.jpg and a.png)."""
    plain = [f.relative_to(root).with_suffix(".png") for f in files]
    counts = Counter(plain)
    return [
        p if counts[p] == 1 else f.relative_to(root).with_name(f.name + ".png")
        for p, f in zip(plain, files, strict=True)
    ]


def align_folder(
    source: str | os.PathLike,
    destination: str | os.PathLike,
    detector: LandmarkDetector,
    *,
    size: int = 256,
    overwrite: bool = False,
    progress: bool = True,
) -> PrepareReport:
    """Align every photo of `source` into `destination` (see module docstring).

    Outputs already present are kept unless `overwrite`, so an interrupted run continues.
    """
    from tqdm.auto import tqdm

    source, destination = Path(source), Path(destination)
    if not source.is_dir():
        raise DatasetError(f"photo folder {source} does not exist")
    files = list_images(source, exclude=destination)
    if not files:
        raise DatasetError(f"photo folder {source} holds no images")
    report = PrepareReport(total=len(files))
    for file, name in tqdm(
        list(zip(files, output_names(files, source), strict=True)),
        unit="photo",
        disable=not progress,
        dynamic_ncols=True,
    ):
        out = destination / name
        rel = str(file.relative_to(source))
        if out.is_file() and not overwrite:
            report.already_done += 1
            continue
        try:
            photo = load_image(file)
            faces = detect_faces(photo, detector)
            aligned = align_face(photo, faces[0], size)
        except NoFaceFound:
            report.no_face.append(rel)
            continue
        except FaceTooSmall:
            report.too_small.append(rel)
            continue
        except ImageError:
            report.unreadable.append(rel)
            continue
        report.several_faces += len(faces) > 1
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        aligned.image.save(tmp, format="PNG")
        os.replace(tmp, out)
        report.aligned += 1
    destination.mkdir(parents=True, exist_ok=True)
    (destination / REPORT_NAME).write_text(json.dumps(asdict(report), indent=2) + "\n")
    return report
