"""The benchmark scripts run end to end and print their tables (tiny inputs; no timing checked)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _run(script: str, *args: object) -> str:
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.mark.slow
def test_memory_benchmark_measures_each_interpreter_and_precision() -> None:
    out = _run(
        "memory.py", "--configs", "tiny32", "--precisions", "float32", "bfloat16",
        "--steps", "1", "--pythons", sys.executable, sys.executable,
    )  # fmt: skip
    rows = [line for line in out.splitlines() if line.startswith("| tiny32")]
    assert len(rows) == 4, out
    import torch

    assert all(f"| {torch.__version__} |" in row for row in rows)


@pytest.mark.slow
def test_zsem_usage_compares_bundles_per_attribute(bundled_model_dir: Path) -> None:
    out = _run("zsem_usage.py", bundled_model_dir, "--faces", 6, "--steps", 3)
    assert "swap: follows z_sem" in out and "| attribute |" in out
    row = next(line for line in out.splitlines() if line.startswith(f"| {bundled_model_dir}"))
    assert row.count("%") == 2 and " dB " in row


@pytest.mark.slow
def test_paste_back_compares_both_modes_on_photos_and_drawn_faces(
    bundled_model_dir: Path, tmp_path: Path
) -> None:
    picture = tmp_path / "paste.png"
    out = _run(
        "paste_back.py", "--model", bundled_model_dir, "--faces", 2, "--steps", 2,
        "--picture", picture,
    )  # fmt: skip
    photo_rows = [line for line in out.splitlines() if line.startswith(("| astronaut", "| grace"))]
    assert len(photo_rows) == 2, out
    # Unedited "change" paste-back is the photo itself: an infinite PSNR, sharpness 1.
    assert all(row.split(" | ")[3] == "inf" and row.split(" | ")[5] == "1" for row in photo_rows)
    assert out.startswith("# paste_back:") and " logical CPUs " in out.splitlines()[0]
    assert out.count("| Wearing_Hat |") == 3 and out.count("| Eyeglasses |") == 3
    assert Image.open(picture).size[0] == 3 * 256
