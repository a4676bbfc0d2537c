"""The command line's arguments: one parser, one small function per subcommand.

``cli.py`` runs the commands; ``python -m diffae_app COMMAND --help`` shows what this builds.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, NoReturn

from .paste import DEFAULT_PASTE, PASTE_MODES
from .session import QUALITY_PRESETS


class _OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {' '.join(message.split())} (see {self.prog} --help)\n")


def _assignment(kind: str) -> Callable[[str], tuple[str, float]]:
    def parse(text: str) -> tuple[str, float]:
        name, sep, value = text.partition("=")
        if not sep or not name.strip():
            raise argparse.ArgumentTypeError(f"expected NAME={kind.upper()}, got {text!r}")
        try:
            return name.strip(), float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{kind} of {name!r} must be a number, got {value!r}"
            ) from None

    parse.__name__ = kind
    return parse


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("model and compute")
    group.add_argument(
        "--model",
        default="default",
        help="'default' (bundled SynthFaces-64), a bundle folder, a Hub repo id, or an official "
        "checkpoint (.ckpt or checkpoints/ folder); default: %(default)s",
    )
    group.add_argument(
        "--revision",
        help="Hub revision for a repo id; a commit hash pins the exact weights (a branch or "
        "tag can move)",
    )
    group.add_argument(
        "--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda[:N], mps"
    )
    group.add_argument(
        "--precision",
        default="float32",
        choices=("float32", "bfloat16", "float16", "auto"),
        help="auto: bf16 where the hardware runs it natively and it renders within 40 dB of "
        "float32 (measured at load, as the app does); default: %(default)s",
    )
    group.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's)")
    group.add_argument(
        "--detector", default="auto", choices=("auto", "dlib", "face_alignment"),
        help="face landmark backend; auto: face-alignment when its weights are in the torch hub "
        "cache (see fetch-detector-weights), else dlib",
    )  # fmt: skip
    group.add_argument(
        "--quality",
        default="balanced",
        choices=tuple(QUALITY_PRESETS),
        help="step-count preset: "
        + ", ".join(
            f"{k} (T_inv {v.T_inv}, T_render {v.T_render})" for k, v in QUALITY_PRESETS.items()
        ),
    )
    group.add_argument(
        "--T-inv", dest="T_inv", type=int, help="DDIM inversion steps (overrides --quality)"
    )
    group.add_argument(
        "--T-render", dest="T_render", type=int, help="DDIM render steps (overrides --quality)"
    )
    group.add_argument("--quiet", action="store_true", help="no progress bars")
    return common


def _input_options() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--face", type=int, default=0, help="which face, 0 = best (default 0)")
    options.add_argument(
        "--aligned", action="store_true", help="input is an aligned square crop: skip detection"
    )
    return options


def _repeated(
    parser: argparse.ArgumentParser, flag: str, dest: str, metavar: str, help: str | None = None,
    type: Callable[[str], object] | None = None,
) -> None:  # fmt: skip
    """An option that may be given several times; its values collect in a list."""
    parser.add_argument(
        flag, dest=dest, action="append", default=[], type=type, metavar=metavar, help=help
    )


def _edit_options() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    _repeated(
        options, "--set", "strengths", "NAME=STRENGTH", type=_assignment("strength"),
        help="attribute strength in the official units (e.g. 0.3); repeat",
    )  # fmt: skip
    _repeated(options, "--lock", "locks", "NAME", "keep this attribute fixed; repeat")
    _repeated(
        options, "--target", "targets", "NAME=PROBABILITY", type=_assignment("probability"),
        help="reach this classifier probability instead; repeat",
    )  # fmt: skip
    _repeated(
        options, "--attribute", "attribute_files", "FILE",
        "custom attribute artefact (.safetensors) to add to the sliders; repeat",
    )  # fmt: skip
    options.add_argument(
        "--seed", type=int, help="render from fresh noise of this seed (a variation) "
        "instead of the photo's inverted noise",
    )  # fmt: skip
    return options


def build_parser() -> argparse.ArgumentParser:
    common, inputs, edits = _common_options(), _input_options(), _edit_options()
    parser = _OneLineParser(
        prog="python -m diffae_app",
        description="DiffAE Studio: edit faces in photos with Diffusion Autoencoders.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help: str, *parents: argparse.ArgumentParser) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help, description=help, parents=[*parents, common])

    _align_arguments(
        command("align", "detect the faces of a photo and write the aligned crop", inputs)
    )
    _encode_arguments(
        command("encode", "encode a face once (z_sem + x_T) into a .safetensors file", inputs)
    )
    _edit_arguments(
        command(
            "edit", "edit attributes; writes the full photo and the aligned crop", inputs, edits
        )
    )
    _reconstruct_arguments(
        command("reconstruct", "render the face back without edits (quality check)", inputs)
    )
    _attributes_arguments(
        command("attributes", "print the classifier probability of every attribute", inputs)
    )
    _interpolate_arguments(command("interpolate", "morph between two faces", inputs))
    _sample_arguments(command("sample", "draw random faces from the latent DPM"))
    _add_recipe_command(commands, common)
    _add_custom_command(commands, common)
    _add_other_commands(commands)
    return parser


def _align_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("photo")
    p.add_argument("--out", required=True, help="aligned crop (PNG)")
    p.add_argument("--size", type=int, help="crop side (default: the model's image size)")


def _encode_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("photo")
    p.add_argument("--out", required=True, help="encoding file (.safetensors)")


PHOTO_HELP = "photo, aligned crop (--aligned) or encoding (.safetensors)"


def _edit_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("photo", help=PHOTO_HELP)
    p.add_argument("--out", required=True, help="edited full photo (PNG/JPEG)")
    p.add_argument("--crop-out", help="edited aligned crop (default: OUT with _crop added)")
    p.add_argument("--recipe-out", help="write the edit's recipe (JSON) here")
    p.add_argument("--feather", type=float, default=0.1, help="paste-back fade, 0-0.5 of the crop")
    p.add_argument(
        "--paste", choices=PASTE_MODES, default=DEFAULT_PASTE,
        help="change: add only the edit's change to the photo, keeping its detail (default); "
        "render: paste the model's whole rendered face",
    )  # fmt: skip


def _reconstruct_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("photo", help=PHOTO_HELP)
    p.add_argument("--out", required=True, help="full photo with the reconstruction pasted back")
    p.add_argument("--crop-out", help="reconstructed crop (default: OUT with _crop added)")


def _attributes_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("photo", help=PHOTO_HELP)
    _repeated(p, "--attribute", "attribute_files", "FILE")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _interpolate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("a", help="first photo, crop or encoding")
    p.add_argument("b", help="second photo, crop or encoding")
    p.add_argument("--face-b", type=int, help="face index in B (default: --face)")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--out", required=True, help=".gif animation, or .png for a strip only")
    p.add_argument("--strip", help="also write the frames side by side to this image")
    p.add_argument("--frame-ms", type=int, default=120, help="GIF frame duration")


def _sample_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-n", type=int, default=8, help="how many (default 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--T-latent", dest="T_latent", type=int, help="latent DPM steps")
    _repeated(
        p, "--push", "push", "NAME=STRENGTH", type=_assignment("strength"),
        help="push every sample along an attribute; repeat",
    )  # fmt: skip
    p.add_argument("--out", required=True, help="grid image (.png/.jpg) or a folder")
    p.add_argument("--encodings", help="also write each sample's encoding here (a folder)")


def _add_recipe_command(commands: Any, common: argparse.ArgumentParser) -> None:
    recipe = commands.add_parser(
        "recipe", help="replay saved edits", description="replay saved edits"
    )
    recipe_commands = recipe.add_subparsers(dest="recipe_command", metavar="ACTION", required=True)
    p = recipe_commands.add_parser(
        "apply", help="apply a recipe (JSON) to a photo", parents=[common]
    )
    p.add_argument("recipe")
    p.add_argument("photo")
    p.add_argument("--aligned", action="store_true", help="photo is an aligned crop")
    p.add_argument("--out", required=True)
    p.add_argument("--crop-out")
    p.add_argument("--paste", choices=PASTE_MODES, help="paste-back mode (default: the recipe's)")


def _add_custom_command(commands: Any, common: argparse.ArgumentParser) -> None:
    help_custom = "fit a new attribute slider from example images"
    p = commands.add_parser(
        "custom-attribute",
        aliases=["custom"],
        help=help_custom,
        description=help_custom,
        parents=[common],
    )
    p.add_argument("--name", required=True)
    p.add_argument("--positive", nargs="+", required=True, help="images that have it")
    p.add_argument("--negative", nargs="+", required=True, help="images that do not")
    p.add_argument("--aligned", action="store_true", help="examples are aligned crops")
    p.add_argument(
        "--out",
        help="classifier artefact (.safetensors); default: classifiers/NAME-<model "
        "fingerprint>.safetensors, where the app lists it for this model",
    )


def _add_other_commands(commands: Any) -> None:
    """Commands without the model options: the detector weights, and ``convert`` (its own
    parser, in ``convert.py``; listed here for --help)."""
    help_fetch = (
        "download face-alignment's two weight files (~90 MB each) into the torch hub cache, "
        "checking their sha256; afterwards --detector auto uses face-alignment offline"
    )
    commands.add_parser("fetch-detector-weights", help=help_fetch, description=help_fetch)

    commands.add_parser(
        "convert", help="convert an official checkpoint into a bundle (see convert --help)",
        add_help=False,
    )  # fmt: skip
