"""Where the UI takes its attribute names and example faces from (issue 18).

Slider slots come from classifier artefacts, example faces from files in assets/examples/;
nothing under diffae_app/ui/ imports the SynthFaces generator (or anything in diffae_app.data).
"""

from __future__ import annotations

import ast
from pathlib import Path
from types import SimpleNamespace

import torch

from diffae_app.classifier import CELEBA_ATTRIBUTES, AttributeClassifier, read_header
from diffae_app.studio import DEFAULT_MODEL_DIR
from diffae_app.ui.app import known_attribute_names
from diffae_app.ui.examples import EXAMPLES_DIR, shipped_examples

UI_DIR = Path(__file__).resolve().parents[1] / "diffae_app" / "ui"


def _imported_modules(path: Path) -> set[str]:
    """Absolute names of every module a file imports (relative imports resolved)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # from .x / from ..x inside diffae_app.ui
                parent = ["diffae_app", "ui"][: 2 - (node.level - 1)]
                base = ".".join([*parent, base] if base else parent)
            names |= {base, *(f"{base}.{alias.name}" for alias in node.names)}
    return names


def test_nothing_in_the_ui_imports_the_data_package() -> None:
    offenders = {
        path.name: sorted(n for n in _imported_modules(path) if n.startswith("diffae_app.data"))
        for path in sorted(UI_DIR.glob("*.py"))
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_slider_slots_come_from_classifier_artefacts(tmp_path: Path) -> None:
    # Another local bundle offered by the server, with an attribute nobody else has.
    bundle = tmp_path / "bundle"
    AttributeClassifier(
        attribute_names=("Freckles",),
        weight=torch.ones(1, 4),
        bias=torch.zeros(1),
        z_mean=torch.zeros(4),
        z_std=torch.ones(4),
    ).save(bundle / "classifiers" / "freckles.safetensors")
    default = SimpleNamespace(attribute_names=("Loaded_Only",))
    models = SimpleNamespace(default=default, choices=("default", str(bundle), "owner/hub-id"))

    names = known_attribute_names(models)

    (bundled,) = sorted((DEFAULT_MODEL_DIR / "classifiers").glob("*.safetensors"))
    bundled_names = ast.literal_eval(read_header(bundled)["attribute_names"])
    assert names[0] == "Loaded_Only"  # the loaded model's own names lead
    assert set(bundled_names) <= set(names)  # the bundled model's artefact
    assert "Freckles" in names  # the offered bundle's artefact, read without loading it
    assert names[-len(CELEBA_ATTRIBUTES) :] == list(CELEBA_ATTRIBUTES)  # official checkpoints


def test_example_faces_are_shipped_files() -> None:
    paths = shipped_examples()
    assert [p.name for p in paths] == [
        "face_a.png", "face_b.png", "face_c.png", "face_d.png", "two_faces.png",
    ]  # fmt: skip
    for path in paths:
        assert path.parent == EXAMPLES_DIR and 0 < path.stat().st_size < 40_000
    assert (EXAMPLES_DIR / "README.md").is_file()
