"""diffae_app.evaluate on the bundled model, with counts small enough for a unit test.

The numbers themselves are the model's (see its model card); here we check that every
measurement runs, that each is computed from what it claims (PSNR against the input, judge
verdicts against the generator's truth), and that --write stores what the UI reads.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pytest

from diffae_app import DiffAE
from diffae_app.classifier import AttributeClassifier
from diffae_app.data.synthfaces import ATTRIBUTES
from diffae_app.evaluate import EvalOptions, calibrate_full_strengths, evaluate, main

pytestmark = pytest.mark.usefixtures("single_thread")

TINY = EvalOptions(
    num_faces=6,
    num_samples=4,
    T_inv=3,
    T_render=3,
    T_latent=3,
    edit_faces_per_direction=1,
    calibration_faces=40,
    fjd_faces=8,
    batch_size=8,
)


def test_calibrated_strengths_separate_the_classes(bundled_model_dir) -> None:
    model = DiffAE.from_pretrained(bundled_model_dir)
    classifier = next(iter(model.classifiers.values()))
    # 200 faces: attributes the model barely encodes (classifier AUROC 0.6-0.75) have class
    # means only ~0.01-0.05 apart, so 60 faces left two of them on the wrong side.
    full = calibrate_full_strengths(model, classifier, num_faces=200, batch_size=50)
    assert set(full) <= set(ATTRIBUTES) and len(full) >= 10
    # Positives project further along the classifier's direction than negatives: always for
    # the attributes the classifier separates well, nearly always for the rest.
    encoded = [n for n in full if classifier.metrics[n]["auroc"] >= 0.9]
    assert len(encoded) >= 8 and all(full[n] > 0 for n in encoded)
    assert sum(v > 0 for v in full.values()) >= len(full) - 1


def test_evaluate_reports_every_measurement(bundled_model_dir, tmp_path) -> None:
    model = DiffAE.from_pretrained(bundled_model_dir)
    lines: list[str] = []
    report = evaluate(model, TINY, out_dir=tmp_path, log=lines.append)
    rec = report["reconstruction"]
    assert 10 < rec["psnr_min_db"] <= rec["psnr_mean_db"] < 60
    assert 0 <= rec["z_sem_only_judge_agreement"] <= 1
    assert set(rec["z_sem_only_per_attribute"]) == set(ATTRIBUTES)
    assert report["judge_accuracy"] and min(report["judge_accuracy"].values()) >= 0.95
    edited = [r for r in report["editing"] if r.get("add") or r.get("remove")]
    assert edited, "no attribute could be edited on 6 faces"
    for row in edited:
        for cell in (row.get("add"), row.get("remove")):
            if cell:
                assert (
                    cell["n"] == 1 and 0 <= cell["success"] <= 1 and 0 <= cell["others_kept"] <= 1
                )
    assert set(report["sampling"]) == set(ATTRIBUTES)
    assert (tmp_path / "samples.png").is_file()
    assert 0.5 < report["classifier_auroc_mean"] <= 1
    assert any("PSNR" in line for line in lines)
    fjd = report["fjd"]
    assert fjd["faces"] == 8 and all(
        fjd[k] >= 0 for k in ("drawn_faces", "reconstructions", "samples")
    )
    assert any("FJD" in line for line in lines)


def test_realism_section_alone_puts_drawn_faces_closest(bundled_model_dir) -> None:
    model = DiffAE.from_pretrained(bundled_model_dir)
    options = replace(TINY, fjd_faces=120, batch_size=60)
    report = evaluate(model, options, sections=("realism",), log=lambda _: None)
    assert set(report) >= {"fjd"} and "reconstruction" not in report and "editing" not in report
    fjd = report["fjd"]
    # Other drawn faces share the reference's distribution: nothing a 3-step model makes can be
    # closer to it than they are.
    assert fjd["drawn_faces"] < min(fjd["reconstructions"], fjd["samples"]), fjd


def test_main_refuses_unknown_sections(capsys) -> None:
    assert main(["--sections", "speed"]) == 2
    assert "--sections" in capsys.readouterr().err


def test_main_write_stores_strengths_and_card(bundled_model_dir, tmp_path, capsys) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(bundled_model_dir, bundle)
    for path in bundle.rglob("*"):
        path.chmod(0o644 if path.is_file() else 0o755)
    (bundle / "README.md").write_text(
        "# card\n\n## Measured (python -m diffae_app.evaluate)\n\nold\n"
    )
    args = [
        "--model",
        str(bundle),
        "--faces",
        "4",
        "--samples",
        "2",
        "--edit-faces",
        "1",
        "--steps",
        "2",
        "--fjd-faces",
        "4",
    ]
    assert main([*args, "--write", "--report", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "Summary" in out and ">= 40 dB" in out and "FJD" in out
    card = (bundle / "README.md").read_text()
    assert card.count("## Measured") == 1 and "old" not in card and "AUROC" in card
    (path,) = (bundle / "classifiers").glob("*.safetensors")
    strengths = AttributeClassifier.load(path).metrics["_full_strength"]
    report = json.loads((tmp_path / "r.json").read_text())
    assert strengths == {k: round(v, 4) for k, v in report["full_strength"].items()}


def test_main_rejects_a_missing_model(tmp_path, capsys) -> None:
    assert main(["--model", str(tmp_path / "nope")]) == 2
    assert "error:" in capsys.readouterr().err
