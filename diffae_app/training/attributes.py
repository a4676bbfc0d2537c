"""Stage 4: linear attribute classifiers on normalised z_sem (scikit-learn logistic regression).

Labels come from
* a CSV: a header `image_id,<attribute>...`, then one row per image: its id (a relative path
  or a file name) and one value per attribute, either in {-1, 0, 1} (CelebA style: 0 means
  unknown, excluded for that attribute) or in {0, 1} (0 means negative); an empty cell is
  unknown in both;
* the CelebAMask-HQ attribute file: line 1 the image count, line 2 the 40 names, then
  `name.jpg v1 ... v40` with values in {-1, 1}.

Each attribute gets its own class-balanced (`class_weight='balanced'`) logistic regression on
z_norm = (z_sem - z_mean) / z_std with the latents file's statistics, so the artefact's
`weight`/`bias` are exactly `coef_`/`intercept_` and `AttributeClassifier.logits` reproduces
`decision_function`. A seeded held-out split (20% by default) gives per-attribute metrics,
stored in the artefact:

    accuracy            at logit 0 (the classifier's own decision)
    balanced_accuracy   mean of the per-class recalls (labels are often unbalanced)
    auroc               threshold-free ranking quality; NaN when the held-out part has one class
    n_train, n_test     labelled images used
    positive_rate       fraction of positives among the labelled images
    weight_norm         |w|: the logit change per unit move of z_norm along w / |w|; an editing
                        slider that moves z_norm by s * w / |w| changes the logit by s * |w|
    logit_std           standard deviation of the held-out logits; s = logit_std / weight_norm
                        is a step that moves a typical face by one standard deviation of logit
    n_iter              L-BFGS iterations used (== max_iter: stopped before converging)

The shipped weights are the ones the metrics were measured on (fitted on the training part).
The artefact also stores each attribute's edit direction (`AttributeClassifier.directions`):
the mean of z_norm over the positive training images minus that over the negatives, which the
sliders then follow instead of w / |w|.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score
from threadpoolctl import threadpool_limits

from ..classifier import AttributeClassifier
from .latents import LatentCodes

log = logging.getLogger(__name__)


class LabelError(ValueError):
    """A label file is missing or malformed, or its ids do not match the latents."""


@dataclass(frozen=True)
class LabelTable:
    """Labels per image: values (N, A) int8 in {-1 (negative), 0 (unknown), +1 (positive)}."""

    ids: tuple[str, ...]
    names: tuple[str, ...]
    values: np.ndarray
    source: str
    # Empty CSV cells per attribute (read as unknown); only attributes with any are listed.
    empty_cells: Mapping[str, int] = field(default_factory=dict)

    def empty_cells_line(self) -> str | None:
        """One line counting the empty cells per attribute, or None when there are none."""
        if not self.empty_cells:
            return None
        total = sum(self.empty_cells.values())
        each = ", ".join(f"{name} {count}" for name, count in self.empty_cells.items())
        return f"{self.source}: {total} empty cells read as unknown ({each})"


def _cell(value: str, path: Path, line: int) -> float | None:
    value = value.strip()
    if value == "":
        return None
    try:
        number = float(value)
    except ValueError:
        raise LabelError(f"{path}:{line}: label {value!r} is not a number") from None
    if number not in (-1.0, 0.0, 1.0):
        raise LabelError(f"{path}:{line}: label {value!r} is not one of -1, 0, 1")
    return number


def read_label_csv(path: str | os.PathLike, label_format: str = "auto") -> LabelTable:
    """Read a label CSV (see module docstring); `label_format` is 'auto', 'pm1' or '01'.

    'auto' reads the file as {-1, 0, 1} when any -1 occurs, else as {0, 1}.
    """
    path = Path(path)
    if label_format not in ("auto", "pm1", "01"):
        raise LabelError(f"unknown label format {label_format!r}; use auto, pm1 or 01")
    if not path.is_file():
        raise LabelError(f"label file {path} does not exist")
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    rows = [r for r in rows if any(c.strip() for c in r)]
    if len(rows) < 2 or len(rows[0]) < 2:
        raise LabelError(f"{path}: needs a header `image_id,<attribute>...` and at least one row")
    names = tuple(c.strip() for c in rows[0][1:])
    if len(set(names)) != len(names):
        raise LabelError(f"{path}: duplicate attribute columns")
    ids, cells = [], []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(names) + 1:
            raise LabelError(f"{path}:{line}: {len(row)} columns, the header has {len(names) + 1}")
        ids.append(row[0].strip())
        cells.append([_cell(v, path, line) for v in row[1:]])
    raw = np.array([[np.nan if v is None else v for v in r] for r in cells], dtype=np.float64)
    if label_format == "auto":
        label_format = "pm1" if np.any(raw == -1) else "01"
    if label_format == "01":
        if np.any(raw == -1):
            raise LabelError(
                f"{path}: -1 labels in a file read as {{0, 1}}; use --label-format pm1"
            )
        raw = np.where(raw == 0, -1.0, raw)
    empty = np.isnan(raw).sum(axis=0)
    empty_cells = {name: int(n) for name, n in zip(names, empty, strict=True) if n}
    values = np.nan_to_num(raw, nan=0.0).astype(np.int8)
    return LabelTable(tuple(ids), names, values, f"{path} ({label_format})", empty_cells)


def read_celebahq_attributes(path: str | os.PathLike) -> LabelTable:
    """Read CelebAMask-HQ-attribute-anno.txt (count, names, `name v1 ... vA` in {-1, 1})."""
    path = Path(path)
    if not path.is_file():
        raise LabelError(f"attribute file {path} does not exist")
    lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    if len(lines) < 3:
        raise LabelError(f"{path}: expected a count line, a names line and label rows")
    try:
        count = int(lines[0][0])
    except ValueError:
        raise LabelError(
            f"{path}: first line should be the image count, got {' '.join(lines[0])!r}"
        ) from None
    names = tuple(lines[1])
    ids, rows = [], []
    for line, parts in enumerate(lines[2:], start=3):
        if len(parts) != len(names) + 1:
            raise LabelError(f"{path}:{line}: {len(parts) - 1} labels for {len(names)} attributes")
        values = []
        for v in parts[1:]:
            if v not in ("-1", "1", "0"):
                raise LabelError(f"{path}:{line}: label {v!r} is not one of -1, 0, 1")
            values.append(int(v))
        ids.append(parts[0])
        rows.append(values)
    if count != len(ids):
        log.warning("%s announces %d images but lists %d", path, count, len(ids))
    return LabelTable(tuple(ids), names, np.array(rows, dtype=np.int8), f"{path} (CelebAMask-HQ)")


# --------------------------------------------------------------------------- matching ids


def _keys(image_id: str) -> list[object]:
    """Ever looser keys of an id: relative path, file name, stem, number in the stem.

    The number also covers the official LMDB ids `{res}-{i:05d}` (their index i is the
    CelebA-HQ image number), so `256-00012` matches `12.jpg`.
    """
    p = PurePosixPath(image_id.replace("\\", "/"))
    keys: list[object] = [str(p), p.name, p.stem]
    stem = p.stem
    if stem.isdigit():
        keys.append(int(stem))
    elif "-" in stem and stem.rsplit("-", 1)[1].isdigit() and stem.split("-", 1)[0].isdigit():
        keys.append(int(stem.rsplit("-", 1)[1]))
    else:
        keys.append(None)
    return keys


def match_ids(latent_ids: Sequence[str], label_ids: Sequence[str]) -> np.ndarray:
    """For each latent id, the row of its labels (or -1): the first key level that matches.

    A key shared by several label rows is ambiguous at that level and not used.
    """
    label_keys = [_keys(i) for i in label_ids]
    levels = len(label_keys[0]) if label_keys else 0
    tables = []
    for level in range(levels):
        counts = Counter(k[level] for k in label_keys if k[level] is not None)
        tables.append(
            {k[level]: row for row, k in enumerate(label_keys) if counts.get(k[level]) == 1}
        )
    out = np.full(len(latent_ids), -1, dtype=np.int64)
    for i, image_id in enumerate(latent_ids):
        for level, key in enumerate(_keys(image_id)):
            if key is not None and key in tables[level]:
                out[i] = tables[level][key]
                break
    return out


# --------------------------------------------------------------------------- training


@dataclass(frozen=True)
class FitOptions:
    held_out: float = 0.2  # fraction of the matched images kept out for the metrics
    seed: int = 0  # of the held-out split
    C: float = 1.0  # inverse L2 strength of LogisticRegression
    max_iter: int = 2000
    # Labelled training images each class needs; an attribute with fewer is dropped.
    min_per_class: int = 2
    # BLAS/OpenMP threads of the fit (0: the libraries' default). The fit is memory-bound
    # matrix-vector work: on a busy machine extra threads mostly spin.
    threads: int = 1


def fit_classifiers(
    codes: LatentCodes,
    labels: LabelTable,
    *,
    attributes: Sequence[str] | None = None,
    options: FitOptions = FitOptions(),
    source: str = "",
    progress: bool = False,
) -> AttributeClassifier:
    """One class-balanced logistic regression per attribute on normalised z_sem."""
    # threadpool_limits only limits thread pools already loaded: sklearn is imported at the
    # top of this module, because an OpenMP pool first loaded inside the block stayed
    # unlimited and made the fit 4x slower (measured).
    with threadpool_limits(options.threads or None):
        return _fit(codes, labels, attributes, options, source, progress)


def _fit(
    codes: LatentCodes,
    labels: LabelTable,
    attributes: Sequence[str] | None,
    options: FitOptions,
    source: str,
    progress: bool,
) -> AttributeClassifier:
    if not 0.0 < options.held_out < 1.0:
        raise LabelError(f"held-out fraction must be in (0, 1), got {options.held_out}")
    names = list(attributes) if attributes else list(labels.names)
    unknown = [n for n in names if n not in labels.names]
    if unknown:
        raise LabelError(
            f"attributes {unknown} are not in {labels.source}; it has: {', '.join(labels.names)}"
        )
    rows = match_ids(codes.ids, labels.ids)
    matched = np.flatnonzero(rows >= 0)
    if matched.size == 0:
        raise LabelError(
            f"no image id of the latents matches {labels.source} (latents ids e.g. "
            f"{list(codes.ids[:3])}, label ids e.g. {list(labels.ids[:3])})"
        )
    if matched.size < len(codes.ids):
        log.warning(
            "%d of %d encoded images have no labels and are not used",
            len(codes.ids) - matched.size,
            len(codes.ids),
        )
    # float32: the fit streams z over and over (memory-bound); float64 is 3x slower for
    # the same held-out AUROC (measured on SynthFaces-64 latents).
    z = codes.normalized().numpy().astype(np.float32)[matched]
    y_all = labels.values[rows[matched]]
    order = np.random.default_rng(options.seed).permutation(matched.size)
    n_test = max(1, round(options.held_out * matched.size))
    is_test = np.zeros(matched.size, dtype=bool)
    is_test[order[:n_test]] = True

    weights, biases, directions, kept, metrics = [], [], [], [], {}
    from tqdm.auto import tqdm

    for name in tqdm(names, unit="attribute", disable=not progress, dynamic_ncols=True):
        y = y_all[:, labels.names.index(name)]
        known = y != 0
        train = known & ~is_test
        test = known & is_test
        positives, negatives = int(np.sum(y[train] > 0)), int(np.sum(y[train] < 0))
        if min(positives, negatives) < options.min_per_class:
            log.warning(
                "attribute %s skipped: %d positive and %d negative labelled training images",
                name,
                positives,
                negatives,
            )
            continue
        model = LogisticRegression(C=options.C, class_weight="balanced", max_iter=options.max_iter)
        model.fit(z[train], (y[train] > 0).astype(np.int64))
        weight, bias = model.coef_[0], float(model.intercept_[0])
        m: dict[str, float] = {
            "n_train": int(train.sum()),
            "n_test": int(test.sum()),
            "positive_rate": float(np.mean(y[known] > 0)),
            "weight_norm": float(np.linalg.norm(weight)),
            "n_iter": int(model.n_iter_[0]),  # == max_iter: stopped before converging
        }
        if test.any():
            logits = z[test] @ weight + bias
            truth = (y[test] > 0).astype(np.int64)
            predicted = (logits > 0).astype(np.int64)
            with warnings.catch_warnings():
                # sklearn warns when a small held-out part holds one class; both stay defined.
                warnings.simplefilter("ignore", UserWarning)
                m["accuracy"] = float(accuracy_score(truth, predicted))
                m["balanced_accuracy"] = float(balanced_accuracy_score(truth, predicted))
            both = 0 < truth.sum() < truth.size
            m["auroc"] = float(roc_auc_score(truth, logits)) if both else math.nan
            m["logit_std"] = float(np.std(logits))
        weights.append(weight)
        biases.append(bias)
        # Edit direction: the difference of the class means (training part). The classifier row
        # is the best direction to *read* the attribute; the mean difference is the direction
        # along which faces with it actually differ from faces without it, and it moves the
        # decoder where the row does not (benchmarks/RESULTS.md, issue 5).
        pos, neg = train & (y > 0), train & (y < 0)
        directions.append(z[pos].mean(0, dtype=np.float64) - z[neg].mean(0, dtype=np.float64))
        kept.append(name)
        metrics[name] = m
    if not kept:
        raise LabelError("no attribute has enough labelled positives and negatives to train")
    return AttributeClassifier(
        attribute_names=tuple(kept),
        weight=torch.tensor(np.stack(weights), dtype=torch.float32),
        bias=torch.tensor(biases, dtype=torch.float32),
        z_mean=codes.z_mean.clone(),
        z_std=codes.z_std.clone(),
        metrics=metrics,
        source=source,
        directions=torch.tensor(np.stack(directions), dtype=torch.float32),
    )


def metrics_table(classifier: AttributeClassifier) -> str:
    """Plain-text table of the held-out metrics, one attribute per line."""

    def fmt(value: float | None) -> str:
        return "n/a" if value is None or math.isnan(value) else f"{value:.3f}"

    width = max(9, *(len(n) for n in classifier.attribute_names))
    lines = [
        f"{'attribute':<{width}}  {'train':>6}  {'test':>5}  {'pos%':>5}  {'acc':>5}  "
        f"{'bal.acc':>7}  {'AUROC':>5}  {'|w|':>6}"
    ]
    for name in classifier.attribute_names:
        m = classifier.metrics.get(name, {})
        lines.append(
            f"{name:<{width}}  {int(m.get('n_train', 0)):>6}  {int(m.get('n_test', 0)):>5}  "
            f"{100 * m.get('positive_rate', math.nan):>5.1f}  {fmt(m.get('accuracy')):>5}  "
            f"{fmt(m.get('balanced_accuracy')):>7}  {fmt(m.get('auroc')):>5}  "
            f"{m.get('weight_norm', math.nan):>6.2f}"
        )
    return "\n".join(lines)
