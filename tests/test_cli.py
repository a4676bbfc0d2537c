"""Tests for the command line (`python -m diffae_app ...`), end to end on the tiny test bundle.

Most commands run in-process through `cli.main(argv)` with one shared dlib detector (loading
its 100 MB model per command would dominate the run time); one test runs the real
`python -m diffae_app` in a subprocess. Photos come from installed packages, never the repo.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from matplotlib import cbook
from PIL import Image
from skimage import data as skimage_data

from diffae_app import align, cli
from diffae_app.align import DlibDetector
from diffae_app.data.synthfaces import ATTRIBUTES, generate_batch
from diffae_app.studio import facade

pytestmark = pytest.mark.usefixtures("single_thread")

REPO = Path(__file__).resolve().parents[1]
STEPS = ["--T-inv", "3", "--T-render", "2"]


# ------------------------------------------------------------------------------------------
# Fixtures and helpers


@pytest.fixture(autouse=True)
def _shared_detector(monkeypatch: pytest.MonkeyPatch, detector: DlibDetector) -> None:
    monkeypatch.setattr(facade, "make_detector", lambda *a, **k: detector)
    monkeypatch.setattr(align, "make_detector", lambda *a, **k: detector)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real photos on disk: the astronaut (PNG) and Grace Hopper (the installed JPEG)."""
    folder = tmp_path_factory.mktemp("photos")
    astronaut = folder / "astronaut.png"
    Image.fromarray(skimage_data.astronaut()).save(astronaut)
    grace = Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    return {"astronaut": astronaut, "grace": grace}


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], np.ndarray]:
    """Twenty generated 32-px SynthFaces as PNG files, and their labels."""
    folder = tmp_path_factory.mktemp("synthfaces")
    images, labels = generate_batch(range(20), 32)
    paths = []
    for index, image in enumerate(images):
        paths.append(folder / f"face_{index:02d}.png")
        Image.fromarray(image).save(paths[-1])
    return paths, labels


def run(
    argv: list[str], bundle: Path, capsys: pytest.CaptureFixture[str], *, model: bool = True
) -> tuple[int, str, str]:
    extra = ["--model", str(bundle), "--quiet", *STEPS] if model else []
    code = cli.main([*argv, *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, payload: bytes) -> bytes:
        body = kind + payload
        return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


# ------------------------------------------------------------------------------------------
# End to end


@pytest.mark.slow
@pytest.mark.parametrize("name", ["astronaut", "grace"])
def test_edit_a_real_photo_and_replay_its_recipe(
    name: str,
    photos: dict[str, Path],
    studio_bundle: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    photo, out, recipe = photos[name], tmp_path / "edited.png", tmp_path / "recipe.json"
    argv = ["edit", str(photo), "--set", "Smiling=0.3", "--set", "Eyeglasses=0.2"]
    argv += ["--lock", "Bangs", "--target", "Pale_Skin=0.9"]
    argv += ["--out", str(out), "--recipe-out", str(recipe)]
    code, stdout, stderr = run(argv, studio_bundle, capsys)
    assert (code, stderr) == (0, "")
    with Image.open(photo) as original:
        assert Image.open(out).size == original.size  # full photo, original size
    # The aligned crop: in the default "change" paste mode at the face's own resolution in the
    # photo (over 100 px here), not the tiny model's 32 px.
    crop_side = Image.open(tmp_path / "edited_crop.png").size
    assert crop_side[0] == crop_side[1] > 100
    assert "Smiling" in stdout and "locked" in stdout
    # The readout says what was asked (the code) and what the picture shows (measured).
    assert stdout.splitlines()[0].split() == ["attribute", "before", "asked", "got", "strength"]
    target_row = next(line for line in stdout.splitlines() if line.startswith("Pale_Skin"))
    assert "(target 0.900)" in target_row
    assert "got: measured on the rendered face" in stdout
    assert json.loads(recipe.read_text())["strengths"] == {"Smiling": 0.3, "Eyeglasses": 0.2}

    again = tmp_path / "again.png"
    code, _, stderr = run(
        ["recipe", "apply", str(recipe), str(photo), "--out", str(again)], studio_bundle, capsys
    )
    assert (code, stderr) == (0, "")
    assert np.array_equal(_pixels(again), _pixels(out))

    # --paste render: the model's whole face is pasted back, and the crop is the model's render.
    rendered = tmp_path / "rendered.png"
    code, _, stderr = run(
        ["recipe", "apply", str(recipe), str(photo), "--out", str(rendered), "--paste", "render"],
        studio_bundle,
        capsys,
    )
    assert (code, stderr) == (0, "")
    assert Image.open(tmp_path / "rendered_crop.png").size == (32, 32)
    assert not np.array_equal(_pixels(rendered), _pixels(out))


@pytest.mark.slow
def test_align_encode_attributes_reconstruct(
    photos: dict[str, Path], studio_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    astronaut = str(photos["astronaut"])
    code, stdout, _ = run(
        ["align", astronaut, "--out", str(tmp_path / "a.png")], studio_bundle, capsys
    )
    assert code == 0 and stdout.startswith("face 0: box")
    assert Image.open(tmp_path / "a.png").size == (32, 32)  # the model's size
    code, _, _ = run(
        ["align", astronaut, "--size", "128", "--out", str(tmp_path / "b.png")],
        studio_bundle,
        capsys,
        model=False,
    )
    assert code == 0 and Image.open(tmp_path / "b.png").size == (128, 128)

    encoding = tmp_path / "face.safetensors"
    assert run(["encode", astronaut, "--out", str(encoding)], studio_bundle, capsys)[0] == 0
    code, stdout, _ = run(["attributes", str(encoding), "--json"], studio_bundle, capsys)
    from_encoding = json.loads(stdout)
    assert code == 0 and tuple(from_encoding) == ATTRIBUTES
    code, stdout, _ = run(["attributes", astronaut], studio_bundle, capsys)
    assert code == 0 and len(stdout.splitlines()) == len(ATTRIBUTES) + 1
    assert stdout.splitlines()[0].split() == ["attribute", "probability"]

    code, stdout, _ = run(
        ["edit", str(encoding), "--set", "Smiling=0.3", "--out", str(tmp_path / "e.png")],
        studio_bundle,
        capsys,
    )
    # An encoding has no photo to paste into: only the crop is written, and the CLI says so.
    assert code == 0 and Image.open(tmp_path / "e_crop.png").size == (32, 32)
    assert not (tmp_path / "e.png").exists() and "no photo to paste" in stdout
    code, _, _ = run(
        ["reconstruct", astronaut, "--out", str(tmp_path / "r.png")], studio_bundle, capsys
    )
    assert code == 0 and Image.open(tmp_path / "r.png").size == (512, 512)


@pytest.mark.slow
def test_generated_faces_interpolate_sample_and_custom_attribute(
    generated: tuple[list[Path], np.ndarray],
    studio_bundle: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    paths, labels = generated
    gif, strip = tmp_path / "morph.gif", tmp_path / "strip.png"
    code, _, _ = run(
        ["interpolate", str(paths[0]), str(paths[1]), "--aligned", "--frames", "5"]
        + ["--out", str(gif), "--strip", str(strip)],
        studio_bundle,
        capsys,
    )
    assert code == 0
    with Image.open(gif) as animation:
        assert animation.n_frames == 5
    assert Image.open(strip).size == (5 * 32, 32)

    grid, encodings = tmp_path / "samples.png", tmp_path / "encodings"
    code, _, _ = run(
        ["sample", "-n", "4", "--seed", "3", "--out", str(grid), "--encodings", str(encodings)],
        studio_bundle,
        capsys,
    )
    assert code == 0 and Image.open(grid).size == (64, 64)
    sampled = sorted(encodings.glob("*.safetensors"))
    assert len(sampled) == 4
    code, _, _ = run(
        ["edit", str(sampled[2]), "--set", "Smiling=0.4", "--out", str(tmp_path / "s.png")],
        studio_bundle,
        capsys,
    )
    assert code == 0

    column = ATTRIBUTES.index("Pale_Skin")
    positive = [str(p) for p, lab in zip(paths, labels, strict=True) if lab[column] == 1][:4]
    negative = [str(p) for p, lab in zip(paths, labels, strict=True) if lab[column] == 0][:4]
    artefact = tmp_path / "classifiers" / "Fair.safetensors"
    code, stdout, _ = run(
        ["custom-attribute", "--name", "Fair", "--aligned", "--positive", *positive]
        + ["--negative", *negative, "--out", str(artefact)],
        studio_bundle,
        capsys,
    )
    assert code == 0 and "training accuracy" in stdout and artefact.is_file()
    code, stdout, _ = run(
        ["edit", str(paths[5]), "--aligned", "--attribute", str(artefact), "--set", "Fair=0.5"]
        + ["--out", str(tmp_path / "fair.png")],
        studio_bundle,
        capsys,
    )
    assert code == 0 and "Fair" in stdout


# ------------------------------------------------------------------------------------------
# Bad input: one line on stderr, exit code 2


def _bad_inputs(folder: Path, photos: dict[str, Path], generated: list[Path]) -> list:
    """(argv, expected fragment of the error line) for every kind of bad input."""
    pdf = folder / "cv.pdf"
    pdf.write_bytes(b"%PDF-1.4 not an image")
    empty = folder / "empty.jpg"
    empty.write_bytes(b"")
    truncated = folder / "truncated.jpg"
    buffer = io.BytesIO()
    Image.fromarray(skimage_data.astronaut()).save(buffer, format="JPEG")
    truncated.write_bytes(buffer.getvalue()[:2000])
    bomb = folder / "bomb.png"
    bomb.write_bytes(_png_header_only(12000, 12000))
    blank = folder / "blank.png"
    Image.new("RGB", (640, 480), (128, 128, 128)).save(blank)
    small = folder / "small_face.png"  # the face is ~38 px across: found, but too small
    Image.fromarray(skimage_data.astronaut()).resize((110, 110), Image.LANCZOS).save(small)
    wide = folder / "wide.png"
    Image.new("RGB", (40, 30)).save(wide)
    out = str(folder / "out.png")
    astronaut = str(photos["astronaut"])
    edit = ["edit", "--out", out]
    return [
        ([*edit, str(folder / "missing.jpg")], "does not exist"),
        ([*edit, str(empty)], "is empty"),
        ([*edit, str(pdf)], "cv.pdf is not an image Pillow can read"),
        ([*edit, str(truncated)], "truncated"),
        ([*edit, str(bomb)], "over the 50 Mpx limit"),
        ([*edit, str(blank)], "no face found"),
        ([*edit, str(small)], "the face is only 38 px across"),
        ([*edit, astronaut, "--face", "3"], "face 3 requested but the photo has 1 face"),
        ([*edit, astronaut, "--set", "Happy=0.3"], "unknown attribute 'Happy'"),
        ([*edit, astronaut, "--lock", "Smiling", "--set", "Smiling=0.2"], "'Smiling' is locked"),
        ([*edit, astronaut, "--target", "Smiling=2"], "target probability of 'Smiling'"),
        ([*edit, astronaut, "--set", "Smiling"], "expected NAME=STRENGTH"),
        ([*edit, astronaut, "--set", "Smiling=big"], "must be a number"),
        ([*edit, str(wide), "--aligned"], "must be square"),
        (["edit", astronaut, "--out", str(folder / "out.txt")], "use an image file name"),
        (["attributes", str(folder / "missing.safetensors")], "no such encoding file"),
        (["recipe", "apply", str(folder / "none.json"), astronaut, "--out", out], "no such recipe"),
        (["sample", "-n", "0", "--out", out], "n must be a whole number from 1 to 64"),
        (["interpolate", str(generated[0]), str(generated[1]), "--aligned", "--out", out, "--frames", "1"], "frames must be"),
        (["frobnicate"], "invalid choice"),
    ]  # fmt: skip


@pytest.mark.slow
def test_every_bad_input_gives_one_line_and_exit_code_2(
    photos: dict[str, Path],
    generated: tuple[list[Path], np.ndarray],
    studio_bundle: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for argv, fragment in _bad_inputs(tmp_path, photos, generated[0]):
        with_model = argv[0] != "frobnicate"
        try:
            code, _, stderr = run(argv, studio_bundle, capsys, model=with_model)
        except SystemExit as exit_:  # argparse exits instead of returning
            code, stderr = exit_.code, capsys.readouterr().err
        assert code == 2, argv
        lines = stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (argv, stderr)
        assert fragment in lines[0], (argv, lines[0])
    # Step counts are checked too (given here without the defaults run() appends).
    argv = ["edit", str(photos["astronaut"]), "--out", str(tmp_path / "o.png")]
    code = cli.main([*argv, "--model", str(studio_bundle), "--quiet", "--T-render", "0"])
    stderr = capsys.readouterr().err
    assert (
        code == 2 and stderr == "error: T_render must be a positive whole number of steps, got 0\n"
    )


def test_model_errors_are_one_line(
    photos: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    astronaut = str(photos["astronaut"])
    for model, fragment in [
        (str(tmp_path / "nowhere"), "no such folder"),
        (str(tmp_path), "no official checkpoint found"),
    ]:
        code = cli.main(["attributes", astronaut, "--model", model, "--quiet"])
        stderr = capsys.readouterr().err
        assert code == 2 and stderr.count("\n") == 1 and fragment in stderr
    assert cli.main(["convert", str(tmp_path / "nothing.ckpt"), str(tmp_path / "out")]) == 2
    stderr = capsys.readouterr().err
    assert stderr.startswith("error: ") and stderr.count("\n") == 1


# ------------------------------------------------------------------------------------------
# The real entry point


@pytest.mark.slow
def test_python_dash_m_runs_end_to_end(
    photos: dict[str, Path], studio_bundle: Path, tmp_path: Path
) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    base = [sys.executable, "-m", "diffae_app"]
    common = ["--model", str(studio_bundle), "--threads", "1", *STEPS]
    out = tmp_path / "edited.jpg"
    done = subprocess.run(
        [*base, "edit", str(photos["grace"]), "--set", "Smiling=0.3", "--out", str(out), *common],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    # dlib is the expected offline landmark backend: no warning about it on every run.
    assert "dlib" not in done.stderr and "face-alignment" not in done.stderr
    assert Image.open(out).size == (512, 600)
    blank = tmp_path / "blank.png"
    Image.new("RGB", (300, 200), (90, 90, 90)).save(blank)
    failed = subprocess.run(
        [*base, "edit", str(blank), "--out", str(out), "--quiet", *common],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=600,
    )
    assert failed.returncode == 2
    assert failed.stderr.splitlines() == [failed.stderr.strip()]
    assert failed.stderr.startswith("error: no face found in the 300×200 photo")
