"""The documentation scripts in scripts/ run end to end on the tiny test bundle."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from diffae_app.classifier import AttributeClassifier
from diffae_app.data.synthfaces import ATTRIBUTES

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _run(script: str, *args: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPTS / script), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture
def calibrated_bundle(studio_bundle: Path, tmp_path: Path) -> Path:
    """The tiny bundle with a full strength stored per attribute, as `evaluate --write` does."""
    folder = tmp_path / "calibrated"
    shutil.copytree(studio_bundle, folder)
    for path in (folder / "classifiers").glob("*.safetensors"):
        classifier = AttributeClassifier.load(path)
        full = {name: 0.8 for name in classifier.attribute_names}
        replace(classifier, metrics={**classifier.metrics, "_full_strength": full}).save(path)
    return folder


def test_before_after_grid_shows_every_attribute_for_both_bundles(
    studio_bundle: Path, calibrated_bundle: Path, tmp_path: Path
) -> None:
    out = tmp_path / "grid.png"
    result = _run(
        "before_after_grid.py", calibrated_bundle, calibrated_bundle, out, "--faces", 1,
        "--scale", 1,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    grid = Image.open(out)
    # label column + 5 tiles of 32 px; header + one row per attribute
    assert grid.size == (150 + 5 * 32, 18 + len(ATTRIBUTES) * 32)
    tiles = [grid.crop((150 + c * 32, 18, 182 + c * 32, 50)) for c in range(5)]
    assert tiles[1].tobytes() != tiles[2].tobytes(), "the edit changes the reconstruction"
    assert tiles[1].tobytes() == tiles[3].tobytes(), "the same bundle renders the same face"


def test_before_after_grid_says_which_bundle_lacks_calibrated_strengths(
    studio_bundle: Path, calibrated_bundle: Path, tmp_path: Path
) -> None:
    result = _run("before_after_grid.py", studio_bundle, calibrated_bundle, tmp_path / "g.png")
    assert result.returncode != 0
    assert "stores no full strength" in result.stderr
    assert "Traceback" not in result.stderr
