"""Issue 13, "In the app and CLI": each strength slider spans about 1.5x its attribute's calibrated
full strength, and an attribute whose edit misses the target on the model is shown as unreliable
with its measured success rates. The measurements are read by the library
(:mod:`diffae_app.reliability`, :attr:`Studio.edit_reliability`), the UI only shows them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from diffae_app.data.synthfaces import ATTRIBUTES as SYNTHFACES_ATTRIBUTES
from diffae_app.reliability import ReliabilityError, read_edit_reliability
from diffae_app.studio import Studio
from diffae_app.ui.handlers import MODES, Handlers
from diffae_app.ui.layout import (
    UNRELIABLE_CLASS,
    SliderBank,
    attribute_label,
    slider_look,
    strength_range,
)
from diffae_app.ui.models import ModelRegistry

from .test_app_fixtures import BUNDLED, tiny_bundle  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("single_thread")

needs_bundle = pytest.mark.skipif(
    not (BUNDLED / "evaluation.json").is_file(), reason="the bundled model is not installed"
)


def _row(name: str, add: tuple[float, float], remove: tuple[float, float] | None) -> dict:
    row = {"attribute": name, "full_strength": 0.5, "add": None, "remove": None}
    row["add"] = {"n": 10, "success": add[0], "others_kept": add[1]}
    if remove is not None:
        row["remove"] = {"n": 10, "success": remove[0], "others_kept": remove[1]}
    return row


# --------------------------------------------------------------------------- the library


def test_reliability_follows_the_edit_target(tmp_path: Path):
    rows = [
        _row("Smiling", (0.0, 1.0), (0.0, 1.0)),  # moves nothing
        _row("Eyeglasses", (0.9, 0.98), (1.0, 0.95)),  # meets both
        _row("Wearing_Hat", (0.9, 0.85), None),  # adds, but changes the rest: misses
        _row("Beard", (0.8, 0.9), (0.7, 0.95)),  # add exactly on target, remove misses
        _row("Bald", (1.0, 1.0), None),  # remove not measured: add decides
    ]
    (tmp_path / "evaluation.json").write_text(json.dumps({"editing": rows}))
    got = read_edit_reliability(tmp_path)
    assert set(got) == {"Smiling", "Eyeglasses", "Wearing_Hat", "Beard", "Bald"}
    assert {k for k, v in got.items() if v.reliable} == {"Eyeglasses", "Bald"}
    assert got["Smiling"].summary() == "adds 0%, removes 0%"
    assert got["Beard"].summary() == "adds 80%, removes 70%"
    assert got["Wearing_Hat"].summary() == "adds 90% (others kept 85%)"
    assert got["Wearing_Hat"].remove is None


def test_missing_and_broken_evaluation(tmp_path: Path):
    assert read_edit_reliability(tmp_path) == {}
    (tmp_path / "evaluation.json").write_text("{not json")
    with pytest.raises(ReliabilityError, match="not readable as JSON"):
        read_edit_reliability(tmp_path)
    (tmp_path / "evaluation.json").write_text(json.dumps({"editing": [{"add": {}}]}))
    with pytest.raises(ReliabilityError, match="no attribute name"):
        read_edit_reliability(tmp_path)
    (tmp_path / "evaluation.json").write_text(
        json.dumps({"editing": [{"attribute": "Smiling", "add": {"n": 3}}]})
    )
    with pytest.raises(ReliabilityError, match="Smiling add"):
        read_edit_reliability(tmp_path)


@needs_bundle
def test_bundled_evaluation_is_read():
    report = json.loads((BUNDLED / "evaluation.json").read_text())
    got = read_edit_reliability(BUNDLED)
    assert set(got) == {row["attribute"] for row in report["editing"]}
    for row in report["editing"]:
        assert got[row["attribute"]].add.success == pytest.approx(row["add"]["success"])


def test_strength_range_scales_with_full_strength():
    assert strength_range(None) == (-2.0, 2.0, 0.05)
    assert strength_range(0.0) == (-2.0, 2.0, 0.05)
    for full in (0.0163, 0.0717, 0.0956, 0.2238, 0.4982, 0.7873, 1.1177, 1.6199, 7.3):
        lo, hi, step = strength_range(full)
        assert lo == -hi
        # Reaches 1.5x full strength, rounded up by at most a quarter, never below 0.1.
        assert max(1.5 * full, 0.1) <= hi <= 1.25 * max(1.5 * full, 0.1) + 1e-9
        assert 40 <= hi / step <= 125  # the step scales with the range
    assert strength_range(1.6199)[:2] == (-2.5, 2.5)
    assert strength_range(0.0956)[:2] == (-0.15, 0.15)


# --------------------------------------------------------------------------- the app


def _handlers(model: str | Path) -> tuple[Handlers, Studio]:
    registry = ModelRegistry(lambda spec: Studio.load(spec, device="cpu"), str(model))
    studio = registry.default
    bank = SliderBank([*studio.attribute_names, *SYNTHFACES_ATTRIBUTES])
    return Handlers(registry, bank), studio


def _shown(handlers: Handlers, mode: str) -> dict[str, dict]:
    state = handlers.new_state()
    out = handlers.slider_updates(state, mode, {})
    return {name: out[f"slot{i}"] for i, name in enumerate(state.slots) if name is not None}


@needs_bundle
def test_bundled_sliders_follow_the_stored_calibration_and_evaluation():
    handlers, studio = _handlers(BUNDLED)
    # The values stored in the classifier artefact by evaluate --write (0.02 .. 1.62).
    stored = studio.classifier.metrics["_full_strength"]
    assert studio.full_strengths == pytest.approx(stored)
    report = json.loads((BUNDLED / "evaluation.json").read_text())
    failing = {
        row["attribute"]: row
        for row in report["editing"]
        if any(
            cell is not None and (cell["success"] < 0.8 or cell["others_kept"] < 0.9)
            for cell in (row["add"], row.get("remove"))
        )
    }
    assert failing and len(failing) < len(report["editing"])  # both kinds are on show

    shown = _shown(handlers, MODES[0])
    assert set(shown) == set(studio.attribute_names)
    for name, update in shown.items():
        full = stored[name]
        assert update["minimum"] == -update["maximum"]
        assert 1.5 * full <= update["maximum"] <= max(1.25 * 1.5 * full, 0.1), name
        assert update["maximum"] < 2.0 or full > 1.0  # no longer the blanket -2..2
        if name in failing:
            row = failing[name]
            assert UNRELIABLE_CLASS in update["elem_classes"], name
            assert update["label"].startswith(f"{attribute_label(name)} — unreliable")
            assert f"adds {100 * row['add']['success']:.0f}%" in update["label"]
            if row.get("remove") is not None:
                assert f"removes {100 * row['remove']['success']:.0f}%" in update["label"]
        else:
            assert update["label"] == attribute_label(name)
            assert update["elem_classes"] == []

    # Target-probability sliders stay 0..1 whatever the calibration.
    for update in _shown(handlers, MODES[1]).values():
        assert (update["minimum"], update["maximum"]) == (0.0, 1.0)


def test_a_bundle_without_measurements_claims_nothing(tiny_bundle: Path, tmp_path: Path):  # noqa: F811
    handlers, studio = _handlers(tiny_bundle)
    assert studio.edit_reliability == {}
    for update in _shown(handlers, MODES[0]).values():
        assert (update["minimum"], update["maximum"], update["step"]) == (-2.0, 2.0, 0.05)
        assert update["elem_classes"] == []
        assert "unreliable" not in update["label"]
    # The same bundle with an evaluation.json: read by the Studio, shown by the sliders.
    copy = shutil.copytree(tiny_bundle, tmp_path / "measured")
    name = studio.attribute_names[0]
    (copy / "evaluation.json").write_text(
        json.dumps({"editing": [_row(name, (0.1, 1.0), (0.95, 0.95))]})
    )
    handlers, studio = _handlers(copy)
    assert not studio.edit_reliability[name].reliable
    assert (
        _shown(handlers, MODES[0])[name]["label"]
        == slider_look(name, None, studio.edit_reliability[name]).label
    )
    assert "adds 10%, removes 95%" in _shown(handlers, MODES[0])[name]["label"]
