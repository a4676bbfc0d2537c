"""The repository stands alone (issue 15): `pip install .` installs what the studio needs and
a `diffae-studio` command; large files go through Git LFS on a Space; the docs tell the truth
about float16 and pin Hub revisions."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SPACES_LIMIT = 10 * 1024 * 1024  # bytes: larger files must be in Git LFS on a Space

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    tomllib = pytest.importorskip("tomli")


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _requirements(name: str) -> tuple[list[str], list[str]]:
    """(requirement lines, files it includes with -r) of a requirements file."""
    lines, includes = [], []
    for raw in (REPO / name).read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("-r"):
            includes.append(line[2:].strip())
        elif line:
            lines.append(line)
    return lines, includes


def _normal(requirement: str) -> str:
    return re.sub(r"\s+", "", requirement).lower().replace("_", "-")


def test_runtime_dependencies_match_requirements_txt() -> None:
    project = _pyproject()["project"]
    lines, includes = _requirements("requirements.txt")
    assert not includes
    assert sorted(map(_normal, project["dependencies"])) == sorted(map(_normal, lines))


def test_extras_match_the_train_and_test_requirements() -> None:
    extras = _pyproject()["project"]["optional-dependencies"]
    train, train_includes = _requirements("requirements-train.txt")
    assert train_includes == ["requirements.txt"]
    assert sorted(map(_normal, extras["train"])) == sorted(map(_normal, train))
    test, test_includes = _requirements("requirements-test.txt")
    assert test_includes == ["requirements-train.txt"]
    assert sorted(map(_normal, extras["test"])) == sorted(
        ["diffae-studio[train]", *map(_normal, test)]
    )


def test_console_script_is_the_cli() -> None:
    target = _pyproject()["project"]["scripts"]["diffae-studio"]
    module, function = target.split(":")
    main = getattr(importlib.import_module(module), function)
    with pytest.raises(SystemExit) as caught:
        main(["--help"])
    assert caught.value.code == 0


def test_large_files_go_through_lfs_on_a_space() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.split(b"\0")
    large = [
        name.decode()
        for name in tracked
        if name
        and (REPO / name.decode()).is_file()
        and (REPO / name.decode()).stat().st_size > SPACES_LIMIT
    ]
    assert large, "expected the bundled model's weights to be over 10 MB"
    probes = [*large, "models/ffhq256/autoencoder.safetensors", "checkpoints/last.ckpt"]
    attributes = subprocess.run(
        ["git", "check-attr", "filter", "--", *probes],
        cwd=REPO,
        capture_output=True,
        check=True,
        text=True,
    ).stdout.splitlines()
    assert all(line.endswith(": filter: lfs") for line in attributes), attributes
    # The tests' reference data stays plain git, so a clone without LFS runs them.
    plain = subprocess.run(
        ["git", "check-attr", "filter", "--", "tests/data/official/reference/x.ckpt"],
        cwd=REPO,
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    assert not plain.strip().endswith(": filter: lfs")
    spaces = (REPO / "docs" / "SPACES.md").read_text()
    assert "Git LFS" in spaces and ".gitattributes" in spaces


def test_preload_from_hub_example_pins_a_commit() -> None:
    spaces = (REPO / "docs" / "SPACES.md").read_text()
    block = spaces.split("preload_from_hub:", 1)[1].split("```", 1)[0]
    entries = [line.strip()[2:] for line in block.splitlines() if line.strip().startswith("- ")]
    assert entries
    for entry in entries:
        fields = entry.split()
        assert len(fields) == 3 and re.fullmatch(r"[0-9a-f]{40}", fields[2]), entry
        assert f"DIFFAE_MODEL_REVISION={fields[2]}" in spaces
        # The file list names files a converted bundle really has.
        from diffae_app.convert import CLASSIFIER_NAME

        assert f"classifiers/{CLASSIFIER_NAME}.safetensors" in fields[1]


def test_float16_docs_say_what_the_code_does() -> None:
    import torch

    from diffae_app.diffae import DiffAE
    from diffae_app.studio import DEFAULT_MODEL_DIR, Studio

    if not (DEFAULT_MODEL_DIR / "config.json").is_file():
        pytest.skip("the bundled model is not installed")
    model = DiffAE.from_pretrained(DEFAULT_MODEL_DIR, precision="float16")
    dtypes = {p.dtype for p in model.autoencoder.parameters()}
    assert torch.float16 in dtypes  # the weights are cast, not autocast over float32
    texts = {
        "docs/APP.md": (REPO / "docs" / "APP.md").read_text(),
        "README.md": (REPO / "README.md").read_text(),
        "Studio.load": Studio.load.__doc__ or "",
        "runtime": (REPO / "diffae_app" / "ui" / "runtime.py").read_text(),
    }
    for where, text in texts.items():
        flat = " ".join(text.split())
        assert "autocast" not in flat, where
        assert "weights stay float32" not in flat, where
    assert "cast to it once at load" in " ".join(texts["docs/APP.md"].split())
