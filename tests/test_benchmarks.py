"""The benchmark scripts run end to end and print their tables (tiny inputs; no timing checked)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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
