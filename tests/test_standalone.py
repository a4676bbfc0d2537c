"""The repository stands alone: the official reference data lives in tests/data/official
(intact, byte for byte), and under CI=true a missing asset or browser fails the suite
instead of skipping the checks that need it."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import OFFICIAL_DIR

REPO = Path(__file__).resolve().parents[1]


def test_official_data_is_inside_the_repository(official_dir: Path) -> None:
    assert official_dir == OFFICIAL_DIR
    assert official_dir.resolve().is_relative_to(REPO / "tests" / "data")
    assert (official_dir / "README.md").read_text().count("00c57d3") >= 1
    for name in ("tiny_autoenc.ckpt", "tiny_autoenc_latent.ckpt", "tiny_cls.ckpt"):
        assert (official_dir / "reference" / name).is_file(), name
    assert len(list((official_dir / "manifests").glob("*.json"))) == 7


def test_variant_files_match_their_published_sha256(official_dir: Path) -> None:
    readme = (official_dir / "variants" / "README.md").read_text()
    rows = re.findall(r"^\| `(\w+)` \| `([0-9a-f]{64})` \| `([0-9a-f]{64})` \|$", readme, re.M)
    assert len(rows) >= 17
    for case, ckpt_sha, refs_sha in rows:
        for suffix, expected in ((".ckpt", ckpt_sha), ("_refs.pt", refs_sha)):
            data = (official_dir / "variants" / f"{case}{suffix}").read_bytes()
            assert hashlib.sha256(data).hexdigest() == expected, f"{case}{suffix}"


_PROBE = """
import pytest

def test_needs_official_data(official_dir):
    pass

@pytest.fixture(scope="module")
def browser():  # as tests/test_app_browser.py does when Chromium is absent
    pytest.skip("chromium is not installed")

@pytest.mark.browser
def test_needs_browser(browser):
    pass

@pytest.mark.browser
@pytest.mark.skipif(True, reason="skipped on purpose")
def test_skipped_on_purpose():
    pass
"""


def _run_probe(tmp_path: Path, ci: str | None) -> tuple[int, str]:
    """Run a small suite with this conftest where no asset and no browser exist."""
    tests = tmp_path / "tests"
    tests.mkdir()
    shutil.copyfile(REPO / "tests" / "conftest.py", tests / "conftest.py")
    (tests / "test_probe.py").write_text(_PROBE)
    empty = tmp_path / "bin"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env.update(
        PATH=str(empty),  # no chromium on PATH
        DIFFAE_CHROMIUM=str(tmp_path / "no-chromium"),
        PYTHONPATH=str(REPO),
        OMP_NUM_THREADS="1",
    )
    if ci is not None:
        env["CI"] = ci
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return result.returncode, result.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_missing_assets_fail_under_ci(tmp_path: Path) -> None:
    code, summary = _run_probe(tmp_path, "true")
    # A failure in setup is reported as an error: the suite fails either way.
    assert code == 1 and "2 errors" in summary and "1 skipped" in summary, summary


@pytest.mark.slow
def test_missing_assets_skip_outside_ci(tmp_path: Path) -> None:
    code, summary = _run_probe(tmp_path, None)
    assert code == 0 and "3 skipped" in summary and "error" not in summary, summary
