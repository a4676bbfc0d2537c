"""Measure a SynthFaces DiffAE bundle against ground truth, with the independent judge.

    python -m diffae_app.evaluate --model assets/models/synthfaces64 [--write]

Every face here is generated from a held-out seed (>= HELDOUT_SEED_START), so its true
attributes are known. The judge (diffae_app/judge.py, a pixel-space CNN that never saw a
latent) reads attributes off decoded images. Printed:

1. reconstruction: PSNR of DDIM inversion + render (T_inv = T_render), and judge agreement
   with the truth when decoding z_sem alone from random x_T;
2. editing: per attribute, faces without it are edited with +full strength (with it: -full);
   success = the judge sees the change; kept = every attribute the counterfactual face
   does not change keeps the judge's verdict on the unedited reconstruction;
3. sampling: judge attribute frequencies of latent-DPM samples vs the dataset's;
4. the linear classifiers' held-out AUROC (stored in the artefact by train/classifiers.py);
5. realism: the Fréchet judge distance (FJD: the FID formula on the judge's penultimate
   features) of random faces to held-out drawn faces, beside two floors: another set of drawn
   faces, and the reconstructions of that set.

``--sections`` runs a subset (e.g. ``--sections realism`` to compare two bundles' FJD).

'full' strength per attribute is calibrated on training seeds: the distance between the
class means of normalised z_sem along the attribute's unit edit direction, in the official
strength units (divided by sqrt(D)), times `full_scale` (2: a face without the attribute is
moved as far past the mean of faces with it as it started below; the decoder, given an
inverted x_T that still carries the face's own attributes, needs that margin). With --write, it is stored in the
classifier artefact's metrics (the UI's slider range) and all numbers go into the model card.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .classifier import AttributeClassifier
from .data.synthfaces import (
    ATTRIBUTE_FREQUENCIES,
    ATTRIBUTES,
    HELDOUT_SEED_START,
    InvalidFaceSpec,
    generate_batch,
    sample_spec,
)
from .diffae import DiffAE
from .editing import edit_z_sem, unit_direction
from .judge import AttributeJudge, images_to_tensor, load_judge
from .metrics import frechet_distance, psnr_db

DEFAULT_JUDGE_DIR = Path(__file__).resolve().parents[1] / "assets" / "judge"


@dataclass(frozen=True)
class EvalOptions:
    num_faces: int = 200  # held-out faces for reconstruction and editing
    num_samples: int = 500  # latent-DPM samples for the frequency check
    T_inv: int = 20
    T_render: int = 20
    T_latent: int = 20
    edit_faces_per_direction: int = 30  # per attribute and direction (add / remove), at most
    calibration_faces: int = 600  # training seeds for the 'full' strength calibration
    full_scale: float = 2.0  # twice the class-mean distance (see the module docstring)
    fjd_faces: int = 1000  # per set for the Fréchet judge distance (section 5)
    batch_size: int = 50
    seed: int = 0


SECTIONS = ("reconstruction", "editing", "sampling", "classifiers", "realism")
"""The measurements `evaluate` can run, in the order they are printed."""

# Seeds of the FJD's reference and comparison sets: held out, and far from the seeds that
# sections 1-2 use, so the sets are disjoint.
_FJD_REFERENCE_START = HELDOUT_SEED_START + 1_000_000
_FJD_OTHER_START = HELDOUT_SEED_START + 2_000_000


def faces_with_attributes(seeds: Sequence[int], size: int) -> tuple[torch.Tensor, np.ndarray]:
    """SynthFaces of these seeds as a (N, 3, size, size) tensor in [-1, 1], and their (N, A)
    true attributes (bool, in ATTRIBUTES order)."""
    images, labels = generate_batch(seeds, size)
    return images_to_tensor(images), labels.astype(bool)


def _batched(fn, *tensors: torch.Tensor, batch_size: int) -> torch.Tensor:
    n = tensors[0].shape[0]
    return torch.cat(
        [fn(*(t[i : i + batch_size] for t in tensors)) for i in range(0, n, batch_size)]
    )


def calibrate_full_strengths(
    model: DiffAE, classifier: AttributeClassifier, *, num_faces: int, batch_size: int
) -> dict[str, float]:
    """Per attribute: (mean of positives - mean of negatives) along u, in strength units."""
    x, labels = faces_with_attributes(range(num_faces), model.image_size)
    z = _batched(model.encode, x * 1.0, batch_size=batch_size)
    z_norm = classifier.normalize(z)
    scale = math.sqrt(classifier.z_sem_channels)
    out = {}
    for name in classifier.attribute_names:
        if name not in ATTRIBUTES:
            continue
        j = ATTRIBUTES.index(name)
        proj = z_norm @ unit_direction(classifier, name)
        pos, neg = labels[:, j], ~labels[:, j]
        if pos.sum() == 0 or neg.sum() == 0:
            continue
        out[name] = float(
            (proj[torch.from_numpy(pos)].mean() - proj[torch.from_numpy(neg)].mean()) / scale
        )
    return out


def _counterfactual_changes(seed: int, name: str, value: bool) -> set[str] | None:
    """Attributes the generator changes when `name` is set to `value`; None if impossible."""
    spec = sample_spec(seed)
    try:
        changed = spec.with_attributes(**{name: value})
    except (InvalidFaceSpec, ValueError):
        return None
    before, after = spec.attribute_vector(), changed.attribute_vector()
    return {ATTRIBUTES[i] for i in range(len(ATTRIBUTES)) if before[i] != after[i]}


class _Judge:
    """The judge's verdicts and features on decoded images in [0, 1], in batches."""

    def __init__(self, judge: AttributeJudge, batch_size: int) -> None:
        self.judge, self.batch_size = judge, batch_size

    def verdicts(self, images01: torch.Tensor) -> np.ndarray:
        """(N, A) bool: the judge's reading of each attribute."""
        probabilities = _batched(
            lambda x: self.judge.probabilities(x * 2 - 1), images01, batch_size=self.batch_size
        )
        return (probabilities > 0.5).numpy()

    def features(self, images01: torch.Tensor) -> torch.Tensor:
        """(N, F) penultimate features (the FJD's feature space)."""
        return _batched(
            lambda x: self.judge.penultimate(x * 2 - 1), images01, batch_size=self.batch_size
        )


@dataclass(frozen=True)
class _Encoded:
    """Held-out faces with their codes and reconstruction (shared by sections 1 and 2)."""

    seeds: list[int]
    truth: np.ndarray  # (N, A) bool
    z_sem: torch.Tensor
    x_T: torch.Tensor
    recon_verdict: np.ndarray  # (N, A) bool: the judge on the reconstructions


def _reconstruct(model: DiffAE, x: torch.Tensor, options: EvalOptions) -> tuple[torch.Tensor, ...]:
    """z_sem, x_T (DDIM inversion) and the reconstruction of images x in [-1, 1]."""
    bs = options.batch_size
    z = _batched(model.encode, x, batch_size=bs)
    x_T = _batched(lambda a, b: model.encode_stochastic(a, b, T=options.T_inv), x, z, batch_size=bs)
    recon = _batched(lambda a, b: model.render(a, b, T=options.T_render), x_T, z, batch_size=bs)
    return z, x_T, recon


def _reconstruction_section(
    model: DiffAE, judge: _Judge, options: EvalOptions, gen: torch.Generator, log
) -> tuple[dict[str, Any], _Encoded]:
    seeds = list(range(HELDOUT_SEED_START, HELDOUT_SEED_START + options.num_faces))
    x, truth = faces_with_attributes(seeds, model.image_size)
    z, x_T, recon = _reconstruct(model, x, options)
    psnr = psnr_db(recon, (x + 1) / 2)
    noise = torch.randn(x.shape, generator=gen)
    z_only = _batched(
        lambda a, b: model.render(a, b, T=options.T_render), noise, z, batch_size=options.batch_size
    )
    z_only_agree = (judge.verdicts(z_only) == truth).mean(0)
    recon_verdict = judge.verdicts(recon)
    section = {
        "psnr_mean_db": float(psnr.mean()),
        "psnr_min_db": float(psnr.min()),
        "inverted_judge_agreement": float((recon_verdict == truth).mean()),
        "z_sem_only_judge_agreement": float(z_only_agree.mean()),
        "z_sem_only_per_attribute": dict(zip(ATTRIBUTES, map(float, z_only_agree), strict=True)),
    }
    log(
        f"\n1. Reconstruction on {len(seeds)} held-out faces (T_inv={options.T_inv}, T_render={options.T_render})"
    )
    log(f"   PSNR (stochastic encoding): mean {psnr.mean():.2f} dB, min {psnr.min():.2f} dB")
    log(
        f"   judge agreement, inverted reconstruction: {(recon_verdict == truth).mean() * 100:.1f}%"
    )
    log(f"   judge agreement, z_sem only (random x_T): {z_only_agree.mean() * 100:.1f}%")
    return section, _Encoded(seeds, truth, z, x_T, recon_verdict)


def _edit_cell(
    model: DiffAE,
    classifier: AttributeClassifier,
    judge: _Judge,
    faces: _Encoded,
    options: EvalOptions,
    name: str,
    strength: float,
    want: bool,
) -> dict[str, Any] | None:
    """Edit the faces lacking (want=True) or having (want=False) `name`; None if none can be."""
    j = ATTRIBUTES.index(name)
    picks, keeps = [], []
    for i, seed in enumerate(faces.seeds):
        if faces.truth[i, j] == want or len(picks) >= options.edit_faces_per_direction:
            continue
        changes = _counterfactual_changes(seed, name, want)
        if changes is None:
            continue
        picks.append(i)
        keeps.append([k for k, other in enumerate(ATTRIBUTES) if other not in changes])
    if not picks:
        return None
    idx = torch.tensor(picks)
    z_edit = edit_z_sem(faces.z_sem[idx], classifier, {name: strength if want else -strength})
    edited = _batched(
        lambda a, b: model.render(a, b, T=options.T_render),
        faces.x_T[idx],
        z_edit,
        batch_size=options.batch_size,
    )
    verdict = judge.verdicts(edited)
    kept_flags = [
        verdict[r, k] == faces.recon_verdict[i, k] for r, i in enumerate(picks) for k in keeps[r]
    ]
    return {
        "n": len(picks),
        "success": float((verdict[:, j] == want).mean()),
        "others_kept": float(np.mean(kept_flags)),
    }


def _editing_section(
    model: DiffAE,
    classifier: AttributeClassifier,
    judge: _Judge,
    faces: _Encoded,
    full: dict[str, float],
    options: EvalOptions,
    log,
) -> list[dict[str, Any]]:
    def cell(d: dict | None) -> str:
        return (
            f"{'n/a':>6} {'':>6} {'':>6}"
            if d is None
            else f"{d['n']:>6} {d['success'] * 100:>5.0f}% {d['others_kept'] * 100:>5.0f}%"
        )

    log(
        f"\n2. Editing ({options.edit_faces_per_direction} faces per direction at most; 'full' strength per attribute)"
    )
    log(
        f"   {'attribute':<20} {'full':>6} | {'add: n':>6} {'seen':>6} {'kept':>6} | {'remove: n':>9} {'gone':>6} {'kept':>6}"
    )
    rows = []
    for name in ATTRIBUTES:
        if name not in classifier.attribute_names or name not in full:
            continue
        row: dict[str, Any] = {"attribute": name, "full_strength": full[name]}
        for direction, want in (("add", True), ("remove", False)):
            row[direction] = _edit_cell(
                model, classifier, judge, faces, options, name, full[name], want
            )
        rows.append(row)
        log(f"   {name:<20} {full[name]:>6.3f} | {cell(row['add'])} | {cell(row['remove']):>23}")
    return rows


def _sample_faces(model: DiffAE, count: int, options: EvalOptions, gen: torch.Generator):
    """`count` random faces from the latent DPM, (N, 3, H, W) in [0, 1]."""
    images = []
    for start in range(0, count, options.batch_size):
        n = min(options.batch_size, count - start)
        images.append(model.sample(n, T=options.T_render, T_latent=options.T_latent, generator=gen))
    return torch.cat(images)


def _sampling_section(
    judge: _Judge, samples: torch.Tensor, options: EvalOptions, out_dir: Path | None, log
) -> dict[str, Any]:
    samples = samples[: options.num_samples]
    freq = judge.verdicts(samples).mean(0)
    section: dict[str, Any] = {
        "sampling": {
            name: {"sampled": float(freq[i]), "dataset": ATTRIBUTE_FREQUENCIES[name]}
            for i, name in enumerate(ATTRIBUTES)
        }
    }
    worst = max(abs(float(freq[i]) - ATTRIBUTE_FREQUENCIES[n]) for i, n in enumerate(ATTRIBUTES))
    section["sampling_max_abs_diff"] = worst
    log(
        f"\n3. Sampling {len(samples)} faces (T_latent={options.T_latent}, T_render={options.T_render})"
    )
    for i, name in enumerate(ATTRIBUTES):
        log(
            f"   {name:<20} sampled {freq[i] * 100:5.1f}%  dataset {ATTRIBUTE_FREQUENCIES[name] * 100:5.1f}%"
        )
    log(f"   largest difference: {worst * 100:.1f} points")
    if out_dir is not None:
        from torchvision.utils import save_image

        out_dir.mkdir(parents=True, exist_ok=True)
        save_image(samples[:64], out_dir / "samples.png", nrow=8)
        section["sample_grid"] = str(out_dir / "samples.png")
    return section


def _realism_section(
    model: DiffAE, judge: _Judge, samples: torch.Tensor | None, options: EvalOptions, log
) -> dict[str, Any]:
    """Fréchet judge distances (FJD) to `fjd_faces` held-out drawn faces.

    Three rows share one reference set (seeds from _FJD_REFERENCE_START): another set of drawn
    faces (the floor that finite sets alone give), the reconstructions of that other set (what
    the autoencoder loses), and random faces from the latent DPM (what the user sees).
    """
    n = options.fjd_faces
    reference, _ = faces_with_attributes(
        range(_FJD_REFERENCE_START, _FJD_REFERENCE_START + n), model.image_size
    )
    other, _ = faces_with_attributes(
        range(_FJD_OTHER_START, _FJD_OTHER_START + n), model.image_size
    )
    reference_features = judge.features((reference + 1) / 2)
    _, _, recon = _reconstruct(model, other, options)
    section = {
        "faces": n,
        "drawn_faces": frechet_distance(judge.features((other + 1) / 2), reference_features),
        "reconstructions": frechet_distance(judge.features(recon), reference_features),
    }
    if samples is not None:
        section["samples"] = frechet_distance(judge.features(samples[:n]), reference_features)
    log(f"\n5. Realism: Fréchet judge distance (FJD) to {n} held-out drawn faces (lower is better)")
    log(f"   other drawn faces (floor of finite sets)  {section['drawn_faces']:8.2f}")
    log(f"   reconstructions of those faces            {section['reconstructions']:8.2f}")
    if "samples" in section:
        log(f"   random faces (latent DPM)                 {section['samples']:8.2f}")
    return section


def _classifier_section(classifier: AttributeClassifier, log) -> dict[str, Any]:
    aurocs = {
        k: v.get("auroc")
        for k, v in classifier.metrics.items()
        if isinstance(v, dict) and "auroc" in v
    }
    if not aurocs:
        return {}
    log("\n4. Linear classifiers on z_sem, held-out AUROC")
    for name, value in aurocs.items():
        log(f"   {name:<20} {value:.4f}")
    mean = float(np.mean(list(aurocs.values())))
    log(f"   mean {mean:.4f}")
    return {"classifier_auroc": aurocs, "classifier_auroc_mean": mean}


def evaluate(
    model: DiffAE,
    options: EvalOptions,
    *,
    judge_dir: Path = DEFAULT_JUDGE_DIR,
    out_dir: Path | None = None,
    sections: Sequence[str] = SECTIONS,
    log=print,
) -> dict[str, Any]:
    """Run the measurements named in `sections` (all by default); returns the report dict
    (also printed through `log`)."""
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown section(s) {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    judge_model, judge_accuracy = load_judge(judge_dir, min_accuracy=0.95)
    judge = _Judge(judge_model, options.batch_size)
    classifier = next(iter(model.classifiers.values()), None)
    if classifier is None and {"editing", "classifiers"} & set(sections):
        raise ValueError(f"{model.source}: the bundle has no attribute classifier to edit with")
    gen = torch.Generator().manual_seed(options.seed)
    report: dict[str, Any] = {"options": asdict(options), "judge_accuracy": judge_accuracy}
    started = time.perf_counter()

    if "reconstruction" in sections or "editing" in sections:
        report["reconstruction"], faces = _reconstruction_section(model, judge, options, gen, log)
    if "editing" in sections:
        full = classifier.metrics.get("_full_strength") or {}
        if not full:
            full = calibrate_full_strengths(
                model,
                classifier,
                num_faces=options.calibration_faces,
                batch_size=options.batch_size,
            )
            full = {k: v * options.full_scale for k, v in full.items()}
        report["full_strength"] = full
        report["editing"] = _editing_section(model, classifier, judge, faces, full, options, log)
    samples = None
    wants_samples = {"sampling", "realism"} & set(sections)
    if model.has_latent_dpm and wants_samples:
        count = max(
            options.num_samples if "sampling" in sections else 0,
            options.fjd_faces if "realism" in sections else 0,
        )
        samples = _sample_faces(model, count, options, gen)
    if samples is not None and "sampling" in sections:
        report.update(_sampling_section(judge, samples, options, out_dir, log))
    if "classifiers" in sections:
        report.update(_classifier_section(classifier, log))
    if "realism" in sections:
        report["fjd"] = _realism_section(model, judge, samples, options, log)
    report["seconds"] = round(time.perf_counter() - started, 1)
    return report


def _summary_table(report: dict[str, Any]) -> str:
    """The measured values beside the bundled model's targets (issue 13), as Markdown."""
    lines = ["| measure | value | target |", "| --- | --- | --- |"]
    rec = report.get("reconstruction")
    if rec:
        lines += [
            f"| reconstruction PSNR (T_inv = T_render = {report['options']['T_render']}) | {rec['psnr_mean_db']:.2f} dB | >= 40 dB |",
            f"| judge agreement, z_sem only | {rec['z_sem_only_judge_agreement'] * 100:.1f}% | >= 90% |",
        ]
    adds = [r["add"] for r in report.get("editing", []) if r.get("add")]
    rems = [r["remove"] for r in report.get("editing", []) if r.get("remove")]
    for label, rows in (("add", adds), ("remove", rems)):
        if rows:
            passing = sum(r["success"] >= 0.8 and r["others_kept"] >= 0.9 for r in rows)
            lines.append(
                f"| attributes meeting both edit targets (success >= 80%, others kept >= 90%), {label} | {passing} of {len(rows)} | >= 12 of 15; removal: all removable |"
            )
    if "sampling_max_abs_diff" in report:
        lines.append(
            f"| sampling: largest frequency difference | {report['sampling_max_abs_diff'] * 100:.1f} points | <= 10 |"
        )
    fjd = report.get("fjd")
    if fjd:
        lines.append(
            f"| FJD of reconstructions (floor; drawn-vs-drawn {fjd['drawn_faces']:.2f}) | {fjd['reconstructions']:.2f} | - |"
        )
        if "samples" in fjd:
            lines.append(
                f"| FJD of random faces ({fjd['faces']} per set) | {fjd['samples']:.2f} | <= half of the previous bundle's |"
            )
    if "classifier_auroc_mean" in report:
        worst = min(report["classifier_auroc"].values())
        lines.append(
            f"| classifier AUROC, mean (min) | {report['classifier_auroc_mean']:.4f} ({worst:.3f}) | >= 0.95 (every >= 0.85) |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model",
        default=str(Path(__file__).resolve().parents[1] / "assets" / "models" / "synthfaces64"),
    )
    parser.add_argument("--judge", default=str(DEFAULT_JUDGE_DIR))
    parser.add_argument("--faces", type=int, default=EvalOptions.num_faces)
    parser.add_argument("--samples", type=int, default=EvalOptions.num_samples)
    parser.add_argument("--edit-faces", type=int, default=EvalOptions.edit_faces_per_direction)
    parser.add_argument("--steps", type=int, default=20, help="T_inv = T_render")
    parser.add_argument("--fjd-faces", type=int, default=EvalOptions.fjd_faces)
    parser.add_argument("--precision", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"comma-separated subset of: {', '.join(SECTIONS)} (default: all)",
    )
    parser.add_argument(
        "--write", action="store_true", help="store full strengths + metrics in the bundle"
    )
    parser.add_argument("--report", default=None, help="write the report JSON here")
    args = parser.parse_args(argv)
    sections = tuple(part.strip() for part in args.sections.split(",") if part.strip())
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown or not sections:
        print(f"error: --sections: choose from {', '.join(SECTIONS)}", file=sys.stderr)
        return 2
    if args.write and set(sections) != set(SECTIONS):
        print("error: --write needs every section (the model card shows them all)", file=sys.stderr)
        return 2
    try:
        model = DiffAE.from_pretrained(args.model, precision=args.precision)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    options = EvalOptions(
        num_faces=args.faces,
        num_samples=args.samples,
        T_inv=args.steps,
        T_render=args.steps,
        edit_faces_per_direction=args.edit_faces,
        fjd_faces=args.fjd_faces,
    )
    report = evaluate(
        model,
        options,
        judge_dir=Path(args.judge),
        out_dir=Path(args.model) if args.write else None,
        sections=sections,
    )
    table = _summary_table(report)
    print("\nSummary\n" + table)
    print(f"\n({report['seconds']} s)")
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=2) + "\n")
    if args.write:
        _write_back(Path(args.model), report, table)
    return 0


def _write_back(bundle: Path, report: dict[str, Any], table: str) -> None:
    """Store full strengths in the classifier artefact and the metrics in the model card."""
    for path in sorted((bundle / "classifiers").glob("*.safetensors")):
        cls = AttributeClassifier.load(path)
        metrics = dict(cls.metrics)
        metrics["_full_strength"] = {
            k: round(v, 4) for k, v in report["full_strength"].items() if k in cls.attribute_names
        }
        replace(cls, metrics=metrics).save(path)
    (bundle / "evaluation.json").write_text(json.dumps(report, indent=2) + "\n")
    card = bundle / "README.md"
    text = card.read_text() if card.exists() else ""
    marker = "## Measured (python -m diffae_app.evaluate)"
    text = (
        text.split(marker)[0].rstrip()
        + f"\n\n{marker}\n\n{table}\n\nFull per-attribute results: evaluation.json.\n"
    )
    card.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
