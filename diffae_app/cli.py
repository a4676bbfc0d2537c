"""Command line: every studio feature, scriptable. ``python -m diffae_app COMMAND ...``.

    python -m diffae_app edit photo.jpg --set Smiling=0.3 --set Eyeglasses=0.2 --lock Male \\
        --out edited.png                 # writes edited.png (full photo) + edited_crop.png
                                         # (--paste render: the model's whole face, not the change)
    python -m diffae_app attributes photo.jpg
    python -m diffae_app interpolate a.jpg b.jpg --frames 8 --out morph.gif
    python -m diffae_app sample -n 8 --seed 1 --out samples.png
    python -m diffae_app recipe apply recipe.json photo.jpg --out again.png
    python -m diffae_app custom --name Freckles --positive a*.png --negative b*.png
                                         # writes classifiers/Freckles-<model fingerprint>.safetensors
    python -m diffae_app fetch-detector-weights   # face-alignment's FAN weights, once, hash-checked
    python -m diffae_app convert checkpoints/ models/ffhq256

Exit codes: 0 done; 2 bad input or arguments (one line ``error: ...`` on stderr); 1 an output
could not be written; 130 interrupted. Progress bars go to stderr (``--quiet`` hides them).
The same calls as the UI: everything goes through :class:`~diffae_app.studio.Studio`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from .cli_parser import build_parser
from .session import QUALITY_PRESETS

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")
ENCODING_SUFFIX = ".safetensors"


# --------------------------------------------------------------------------- helpers


class _Bars:
    """A fresh tqdm bar on stderr per progress stream (one per studio call)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar = None

    def __call__(self, step: int, total: int, message: str) -> None:
        if self.quiet:
            return
        from tqdm import tqdm

        if self.bar is None or self.bar.total != total or step < self.bar.n:
            self.close()
            self.bar = tqdm(total=total, file=sys.stderr, leave=False, unit="step")
        self.bar.set_description_str(message, refresh=False)
        self.bar.update(step - self.bar.n)
        if step >= total:
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _steps(args: argparse.Namespace) -> tuple[int, int]:
    preset = QUALITY_PRESETS[args.quality]
    T_inv = preset.T_inv if args.T_inv is None else args.T_inv
    return (T_inv, preset.T_render if args.T_render is None else args.T_render)


def _studio(args: argparse.Namespace):
    import torch

    from .studio import Studio

    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    return Studio.load(
        args.model,
        revision=args.revision,
        device=args.device,
        precision=args.precision,
        detector=args.detector,
    )


def _session(studio, source: str, args: argparse.Namespace, bars: _Bars, face: int | None = None):
    T_inv, _ = _steps(args)
    if Path(source).suffix.lower() == ENCODING_SUFFIX:
        return studio.import_encoding(source)
    if getattr(args, "aligned", False):
        return studio.encode_aligned(source, T_inv=T_inv, progress=bars)
    return studio.encode_photo(
        source, face_index=args.face if face is None else face, T_inv=T_inv, progress=bars
    )


def _custom(files: Sequence[str]):
    from .classifier import AttributeClassifier

    return [AttributeClassifier.load(f) for f in files]


def _crop_path(out: str, crop_out: str | None) -> Path:
    if crop_out:
        return Path(crop_out)
    out_path = Path(out)
    return out_path.with_name(f"{out_path.stem}_crop{out_path.suffix or '.png'}")


def _image_name(path: str | Path) -> Path:
    path = Path(path)
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise ValueError(f"{path.name}: use an image file name ending in .png or .jpg")
    return path


def _check_outputs(args: argparse.Namespace) -> None:
    """Refuse bad output names before any slow work."""
    _image_name(args.out)
    _image_name(_crop_path(args.out, args.crop_out))


def _save(image, path: str | Path) -> Path:
    path = _image_name(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def _print_result(result, locks: Sequence[str], targets: Mapping[str, float] = ()) -> None:
    """The readout: before (the input), asked (the edited code), got (measured on the
    rendered result, encoded again) and what moved it; '!' marks a miss by more than 0.1."""
    before, after = result.probabilities_before, result.probabilities_after
    asked = result.probabilities_asked or after
    if not before:
        return
    rows = [("attribute", "before", "asked", "got", "strength")]
    for name in before:
        strength = result.strengths.get(name)
        mark = f"{strength:+.3f}" if strength else ("locked" if name in locks else "")
        if name in targets:
            mark += f" (target {targets[name]:.3f})"
        miss = " !" if abs(asked[name] - after[name]) > 0.1 else ""
        rows.append(
            (name, f"{before[name]:.3f}", f"{asked[name]:.3f}", f"{after[name]:.3f}{miss}", mark)
        )
    print(_table(rows))
    print(
        "got: measured on the rendered face (encoded again); asked: the edited code. "
        "'!': the picture shows something else than was asked."
        + (" Targets took one corrective step." if result.corrected else "")
    )


# --------------------------------------------------------------------------- commands


def _cmd_align(args: argparse.Namespace, bars: _Bars) -> None:
    _image_name(args.out)
    from .align import align_face, detect_faces, make_detector
    from .errors import FaceIndexError
    from .imaging import load_image
    from .studio import usable_faces

    photo = load_image(args.photo)
    if args.size is not None:  # no model needed
        faces = usable_faces(detect_faces(photo, make_detector(args.detector)))
        size = args.size
    else:
        studio = _studio(args)
        faces = studio.detect_faces(photo)
        size = studio.image_size
    if not 0 <= args.face < len(faces):
        raise FaceIndexError(
            f"face {args.face} requested but the photo has {len(faces)} "
            f"face{'s' if len(faces) != 1 else ''} (numbered from 0)"
        )
    for index, face in enumerate(faces):
        left, top, right, bottom = face.box
        print(
            f"face {index}: box ({left:.0f}, {top:.0f}, {right:.0f}, {bottom:.0f}) "
            f"score {face.score:.2f}"
        )
    aligned = align_face(photo, faces[args.face], size)
    print(f"wrote {_save(aligned.image, args.out)}")


def _cmd_encode(args: argparse.Namespace, bars: _Bars) -> None:
    studio = _studio(args)
    session = _session(studio, args.photo, args, bars)
    print(f"wrote {studio.export_encoding(session, args.out)}")


def _write_result(result, args: argparse.Namespace, session=None) -> None:
    if session is not None and session.kind == "imported":
        # An encoding carries the face crop, not the photo: a "full photo" would only be a
        # copy of the crop under another name.
        print(
            f"no full photo: {Path(args.photo).name} is an encoding, with no photo to paste "
            f"the face into, so {args.out} is not written; the edited face is the crop"
        )
    else:
        print(f"wrote {_save(result.photo, args.out)}")
    print(f"wrote {_save(result.face_crop, _crop_path(args.out, args.crop_out))}")


def _cmd_edit(args: argparse.Namespace, bars: _Bars) -> None:
    _check_outputs(args)
    studio = _studio(args)
    custom = _custom(args.attribute_files)
    session = _session(studio, args.photo, args, bars)
    _, T_render = _steps(args)
    result = studio.render(
        session,
        dict(args.strengths),
        locks=args.locks,
        targets=dict(args.targets),
        T_render=T_render,
        seed=args.seed,
        custom_attributes=custom,
        feather=args.feather,
        paste=args.paste,
        progress=bars,
    )
    _print_result(result, args.locks, dict(args.targets))
    _write_result(result, args, session)
    if args.recipe_out:
        path = Path(args.recipe_out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(result.recipe.to_json() + "\n")
        print(f"wrote {path}")


def _cmd_reconstruct(args: argparse.Namespace, bars: _Bars) -> None:
    _check_outputs(args)
    studio = _studio(args)
    session = _session(studio, args.photo, args, bars)
    _, T_render = _steps(args)
    _write_result(studio.reconstruct(session, T_render=T_render, progress=bars), args, session)


def _cmd_attributes(args: argparse.Namespace, bars: _Bars) -> None:
    studio = _studio(args)
    custom = _custom(args.attribute_files)
    session = _session(studio, args.photo, args, bars)
    probabilities = studio.attributes(session, custom_attributes=custom)
    if args.json:
        print(json.dumps(probabilities, indent=2))
    else:
        rows = [("attribute", "probability")]
        rows += [(name, f"{p:.3f}") for name, p in probabilities.items()]
        print(_table(rows))


def _cmd_interpolate(args: argparse.Namespace, bars: _Bars) -> None:
    from .studio import write_gif, write_strip

    out = Path(args.out)
    if out.suffix.lower() not in (".gif", ".png", ".jpg", ".jpeg", ".webp"):
        raise ValueError(f"{out.name}: use a .gif (animation) or .png (strip) file name")
    studio = _studio(args)
    a = _session(studio, args.a, args, bars)
    b = _session(studio, args.b, args, bars, face=args.face_b)
    _, T_render = _steps(args)
    frames = studio.interpolate(a, b, args.frames, T_render=T_render, progress=bars)
    if out.suffix.lower() == ".gif":
        write_gif(frames, out, frame_ms=args.frame_ms)
    else:
        write_strip(frames, out)
    print(f"wrote {out}")
    if args.strip:
        write_strip(frames, args.strip)
        print(f"wrote {args.strip}")


def _cmd_sample(args: argparse.Namespace, bars: _Bars) -> None:
    from .studio import grid

    studio = _studio(args)
    _, T_render = _steps(args)
    sessions = studio.sample_sessions(
        args.n,
        seed=args.seed,
        T_render=T_render,
        T_latent=args.T_latent,
        push=dict(args.push),
        progress=bars,
    )
    out = Path(args.out)
    if out.suffix.lower() in IMAGE_SUFFIXES:
        print(f"wrote {_save(grid([s.crop for s in sessions]), out)}")
    else:
        out.mkdir(parents=True, exist_ok=True)
        for index, session in enumerate(sessions):
            session.crop.save(out / f"sample_{args.seed}_{index:03d}.png")
        print(f"wrote {len(sessions)} images to {out}")
    if args.encodings:
        folder = Path(args.encodings)
        for index, session in enumerate(sessions):
            studio.export_encoding(session, folder / f"sample_{args.seed}_{index:03d}.safetensors")
        print(f"wrote {len(sessions)} encodings to {folder}")


def _cmd_recipe(args: argparse.Namespace, bars: _Bars) -> None:
    from .errors import RecipeError
    from .session import Recipe

    path = Path(args.recipe)
    if not path.is_file():
        raise RecipeError(f"{path.name}: no such recipe file")
    recipe = Recipe.from_json(path.read_bytes())  # its step counts override --quality
    _check_outputs(args)
    studio = _studio(args)
    result = studio.apply_recipe(
        args.photo, recipe, aligned=args.aligned, paste=args.paste, progress=bars
    )
    _print_result(result, recipe.locks, recipe.targets)
    _write_result(result, args)


def _cmd_custom_attribute(args: argparse.Namespace, bars: _Bars) -> None:
    studio = _studio(args)
    classifier = studio.custom_attribute(
        args.positive, args.negative, args.name, aligned=args.aligned
    )
    accuracy = classifier.metrics[args.name]["train_accuracy"]
    print(f"fitted {args.name!r}: training accuracy {accuracy:.2f}")
    if args.out is None:
        from .classifier import artefact_name, classifiers_dir

        out = classifiers_dir() / artefact_name(args.name, classifier.model_fingerprint)
    else:
        out = Path(args.out)
    print(f"wrote {classifier.save(out)}")


def _cmd_fetch_detector_weights(args: argparse.Namespace, bars: _Bars) -> None:
    from .align import FAN_WEIGHT_FILES, FanDetector

    detector = FanDetector(allow_download=True)
    print(f"face-alignment weights ready in {detector.weights_dir}: {', '.join(FAN_WEIGHT_FILES)}")


_COMMANDS = {
    "align": _cmd_align,
    "encode": _cmd_encode,
    "edit": _cmd_edit,
    "reconstruct": _cmd_reconstruct,
    "attributes": _cmd_attributes,
    "interpolate": _cmd_interpolate,
    "sample": _cmd_sample,
    "recipe": _cmd_recipe,
    "custom-attribute": _cmd_custom_attribute,
    "custom": _cmd_custom_attribute,
    "fetch-detector-weights": _cmd_fetch_detector_weights,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code (see the module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "convert":
        from .convert import main as convert_main

        return convert_main(argv[1:])
    args = build_parser().parse_args(argv)
    quiet = getattr(args, "quiet", False)  # not every command has the common options
    bars = _Bars(quiet)
    # --quiet also hides notes such as the detector fallback, so stderr holds only errors.
    package_logger = logging.getLogger("diffae_app")
    previous_level = package_logger.level
    if quiet:
        package_logger.setLevel(logging.ERROR)
    try:
        _COMMANDS[args.command](args, bars)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # unwritable output, disk full: not the input's fault
        detail = f"{exc.strerror}: {exc.filename}" if exc.strerror and exc.filename else str(exc)
        print(f"error: {' '.join(detail.split())}", file=sys.stderr)
        return 1
    except (ValueError, RuntimeError) as exc:
        # Every studio error is a ValueError with a one-line message (ImageError, NoFaceFound,
        # FaceTooSmall, CheckpointError, ClassifierError, StudioError); DetectorUnavailable is a
        # RuntimeError. Whitespace is folded so the report stays on one line regardless.
        from .align import DetectorUnavailable

        if isinstance(exc, RuntimeError) and not isinstance(exc, DetectorUnavailable):
            raise
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    finally:
        bars.close()
        package_logger.setLevel(previous_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
