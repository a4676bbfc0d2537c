"""How well each attribute's edit direction works on a model, as measured by ``evaluate --write``.

``python -m diffae_app.evaluate --write`` stores its report as ``evaluation.json`` in the bundle;
its ``editing`` section has, per attribute, the share of held-out faces where adding (and, where the
attribute can be removed, removing) it at full strength made the judge see the change, and the share
of other attributes left as they were. An attribute whose direction misses the target (success
>= 80% with the others kept >= 90%) must not be offered as if it worked: :func:`read_edit_reliability`
gives the app what it needs to say so. A bundle without the file (or an official checkpoint) has
no measurements, and nothing is claimed either way.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

#: The editing target of the model's evaluation (issue 13, target 2).
MIN_EDIT_SUCCESS = 0.8
MIN_OTHERS_KEPT = 0.9
EVALUATION_FILE = "evaluation.json"


class ReliabilityError(ValueError):
    """The bundle's evaluation.json cannot be read as an evaluation report."""


@dataclass(frozen=True)
class EditMeasure:
    """One direction (add or remove) of one attribute, measured on ``n`` held-out faces."""

    n: int
    success: float
    others_kept: float

    @property
    def meets_target(self) -> bool:
        return self.success >= MIN_EDIT_SUCCESS and self.others_kept >= MIN_OTHERS_KEPT


@dataclass(frozen=True)
class EditReliability:
    """The measured add / remove of one attribute (``remove`` None: not measured)."""

    attribute: str
    add: EditMeasure | None
    remove: EditMeasure | None

    @property
    def reliable(self) -> bool:
        """Every measured direction meets the target."""
        return all(m.meets_target for m in (self.add, self.remove) if m is not None)

    def summary(self) -> str:
        """The measured success rates, e.g. 'adds 0%, removes 10%'; where an edit succeeds but
        changes other attributes too, that share as well: 'adds 90% (others kept 88%)'."""
        parts = []
        for verb, m in (("adds", self.add), ("removes", self.remove)):
            if m is None:
                continue
            part = f"{verb} {100 * m.success:.0f}%"
            if m.others_kept < MIN_OTHERS_KEPT:
                part += f" (others kept {100 * m.others_kept:.0f}%)"
            parts.append(part)
        return ", ".join(parts)


def _measure(cell: object, where: str) -> EditMeasure | None:
    if cell is None:
        return None
    if not isinstance(cell, Mapping):
        raise ReliabilityError(f"{where}: expected an object with n, success, others_kept")
    try:
        return EditMeasure(int(cell["n"]), float(cell["success"]), float(cell["others_kept"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ReliabilityError(f"{where}: missing or bad field {exc}") from None


def read_edit_reliability(bundle: str | os.PathLike) -> dict[str, EditReliability]:
    """Per-attribute edit reliability from ``<bundle>/evaluation.json`` ({} when there is none).

    Raises:
        ReliabilityError: the file exists but is not an evaluation report.
    """
    path = Path(bundle) / EVALUATION_FILE
    if not path.is_file():
        return {}
    try:
        report = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReliabilityError(f"{path}: not readable as JSON ({exc})") from None
    rows = report.get("editing", []) if isinstance(report, Mapping) else None
    if not isinstance(rows, list):
        raise ReliabilityError(f"{path}: 'editing' must be a list of per-attribute results")
    out: dict[str, EditReliability] = {}
    for row in rows:
        if not isinstance(row, Mapping) or not isinstance(row.get("attribute"), str):
            raise ReliabilityError(f"{path}: an 'editing' entry has no attribute name")
        name = row["attribute"]
        add = _measure(row.get("add"), f"{path}: {name} add")
        remove = _measure(row.get("remove"), f"{path}: {name} remove")
        if add is not None or remove is not None:
            out[name] = EditReliability(name, add, remove)
    return out
