"""Pure layout decisions of the studio UI: no Gradio, no tensors.

* :func:`attribute_group` sorts a classifier's attribute names into the slider groups the Edit
  tab shows (hair, face, expression, accessories, with 'other' as the fallback and 'custom' for
  attributes a user trained in the session).
* :class:`SliderBank` fixes, at build time, one slider slot per attribute name the app knows
  (``app.known_attribute_names``: the names in the classifier artefacts the server may load,
  and CelebA's), plus a few free slots per group for names nobody foresaw and for custom
  attributes. Per session, a *slot map* says which attribute each slot currently drives
  (``None``: hidden). That keeps every component static (stable ``elem_id``s, one ``gr.on`` for
  all slider releases) while the set of attributes can change with the model or a custom
  attribute.
* :func:`probability_chart_html` draws the before/after probability readout.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

GROUPS: tuple[str, ...] = ("expression", "hair", "face", "accessories", "other", "custom")
GROUP_TITLES: Mapping[str, str] = {
    "expression": "Expression",
    "hair": "Hair & beard",
    "face": "Face",
    "accessories": "Accessories & make-up",
    "other": "Other",
    "custom": "Custom (trained in this session)",
}

# First matching rule wins; patterns are matched against the lower-cased name with '_' as ' '.
_GROUP_RULES: tuple[tuple[str, str], ...] = (
    ("accessories", r"wearing|eyeglass|glasses|\bhat\b|earring|necklace|necktie|makeup|lipstick"),
    ("hair", r"hair|bald|bangs|beard|mustache|moustache|goatee|sideburn|o clock shadow"),
    ("expression", r"smil|mouth|laugh|frown|expression|surpris|angry|sad\b"),
    (
        "face",
        r"face|eye|nose|lip|cheek|chin|skin|brow|young|\bold\b|male|attractive|chubby|"
        r"jaw|forehead|\bage\b",
    ),
)


def attribute_group(name: str) -> str:
    """The slider group of an attribute name ('Wearing_Hat' -> 'accessories').

    Facial hair goes with hair; make-up with accessories; names that match nothing go to 'other'.
    """
    text = name.lower().replace("_", " ")
    for group, pattern in _GROUP_RULES:
        if re.search(pattern, text):
            return group
    return "other"


def attribute_label(name: str) -> str:
    """Human label of an attribute name ('Mouth_Slightly_Open' -> 'Mouth slightly open')."""
    text = name.replace("_", " ").strip()
    return text[:1].upper() + text[1:].lower() if text else name


def slot_id(name: str) -> str:
    """A CSS-safe elem_id for the slider of a named attribute ('5_o_Clock_Shadow' -> ...)."""
    return "attr-" + re.sub(r"[^A-Za-z0-9_-]", "-", name)


#: Strength sliders of attributes without a calibrated full strength (official CelebA-HQ
#: classifier, custom attributes) span this.
DEFAULT_STRENGTH_RANGE = (-2.0, 2.0)
DEFAULT_STRENGTH_STEP = 0.05
#: A calibrated slider reaches this multiple of the attribute's full strength either way: full
#: strength is where a typical face shows the attribute, a bit more helps faces far from it.
FULL_STRENGTH_REACH = 1.5
#: ... but never less than this (a tiny calibrated strength would make a useless sliver).
MIN_STRENGTH_REACH = 0.1
#: About this many steps from the neutral value to either end.
STEPS_PER_SIDE = 50
_NICE_REACH = (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0)


def _nice_at_least(value: float) -> float:
    """The smallest 'round' number (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8 x 10^k) >= value."""
    scale = 10.0 ** math.floor(math.log10(value))
    return round(next(m for m in _NICE_REACH if m * scale >= value * (1 - 1e-9)) * scale, 10)


def _nice_at_most(value: float) -> float:
    """The largest 1, 2, 5 x 10^k <= value."""
    scale = 10.0 ** math.floor(math.log10(value))
    return round(max(m for m in (1.0, 2.0, 5.0) if m * scale <= value * (1 + 1e-9)) * scale, 10)


def strength_range(full_strength: float | None) -> tuple[float, float, float]:
    """(minimum, maximum, step) of a strength slider for an attribute's calibrated full strength.

    Symmetric, reaching :data:`FULL_STRENGTH_REACH` x full strength rounded up to a round number
    (at least :data:`MIN_STRENGTH_REACH`), with about :data:`STEPS_PER_SIDE` steps a side; the
    default -2..2 when nothing is calibrated.
    """
    if full_strength is None or not math.isfinite(full_strength) or full_strength <= 0:
        return (*DEFAULT_STRENGTH_RANGE, DEFAULT_STRENGTH_STEP)
    reach = _nice_at_least(max(FULL_STRENGTH_REACH * full_strength, MIN_STRENGTH_REACH))
    return -reach, reach, _nice_at_most(reach / STEPS_PER_SIDE)


def unreliable_label(name: str, measured: str) -> str:
    """The label of a slider whose direction misses the edit target on the loaded model."""
    return f"{attribute_label(name)} — unreliable on this model: {measured} (evaluate)"


#: CSS class of the slider of an attribute that misses the edit target (greyed out).
UNRELIABLE_CLASS = "attr-unreliable"


class _Measured(Protocol):
    """What :func:`slider_look` needs of a :class:`~diffae_app.reliability.EditReliability`."""

    @property
    def reliable(self) -> bool: ...

    def summary(self) -> str: ...


@dataclass(frozen=True)
class SliderLook:
    """Label, strength range and CSS classes of one attribute's slider."""

    label: str
    minimum: float
    maximum: float
    step: float
    classes: tuple[str, ...] = ()


def slider_look(
    name: str, full_strength: float | None = None, measured: _Measured | None = None
) -> SliderLook:
    """How the slider of ``name`` looks: its range from the calibrated full strength, and greyed
    with the measured success rates in its label when its direction misses the edit target."""
    lo, hi, step = strength_range(full_strength)
    if measured is not None and not measured.reliable:
        return SliderLook(
            unreliable_label(name, measured.summary()), lo, hi, step, (UNRELIABLE_CLASS,)
        )
    return SliderLook(attribute_label(name), lo, hi, step)


@dataclass(frozen=True)
class Slot:
    """One slider position in the layout.

    Attributes:
        group: the accordion it lives in.
        name: the attribute it is reserved for, or ``None`` for a free slot.
        elem_id: stable HTML id (browser tests and the search box use it).
    """

    group: str
    name: str | None
    elem_id: str


SlotMap = tuple[str | None, ...]  # attribute driven by each slot of a bank, None = hidden


class SliderBank:
    """The fixed set of slider slots, grouped, and the per-session mapping onto attributes."""

    def __init__(
        self,
        known_names: Iterable[str],
        *,
        free_per_group: int = 4,
        custom_slots: int = 4,
    ) -> None:
        names: list[str] = []
        for name in known_names:
            if name not in names:
                names.append(name)
        slots: list[Slot] = []
        for group in GROUPS:
            if group == "custom":
                slots += [Slot("custom", None, f"attr-custom-{i}") for i in range(custom_slots)]
                continue
            slots += [Slot(group, n, slot_id(n)) for n in names if attribute_group(n) == group]
            if group == "other":
                slots += [Slot("other", None, f"attr-other-{i}") for i in range(free_per_group)]
        self.slots: tuple[Slot, ...] = tuple(slots)
        self.known_names: tuple[str, ...] = tuple(names)

    def __len__(self) -> int:
        return len(self.slots)

    def group_indices(self, group: str) -> list[int]:
        return [i for i, slot in enumerate(self.slots) if slot.group == group]

    def assign(self, names: Sequence[str], custom_names: Sequence[str] = ()) -> SlotMap:
        """Map attributes onto slots: reserved slots first, unforeseen names to free 'other'
        slots, custom attributes to the custom slots. Names that find no slot are dropped
        (the caller can warn: :meth:`unplaced`)."""
        mapping: list[str | None] = [None] * len(self.slots)
        by_name = {slot.name: i for i, slot in enumerate(self.slots) if slot.name}
        free_other = [i for i, s in enumerate(self.slots) if s.group == "other" and s.name is None]
        free_custom = [i for i, s in enumerate(self.slots) if s.group == "custom"]
        for name in names:
            if name in by_name:
                mapping[by_name[name]] = name
            elif free_other:
                mapping[free_other.pop(0)] = name
        for name in custom_names:
            if free_custom:
                mapping[free_custom.pop(0)] = name
        return tuple(mapping)

    def unplaced(self, mapping: SlotMap, names: Iterable[str]) -> list[str]:
        placed = set(mapping)
        return [name for name in names if name not in placed]

    def visible_groups(self, mapping: SlotMap) -> set[str]:
        return {self.slots[i].group for i, name in enumerate(mapping) if name is not None}


def values_by_name(mapping: SlotMap, values: Sequence[float | None]) -> dict[str, float]:
    """Slider values of the visible slots as ``{attribute: value}``."""
    out: dict[str, float] = {}
    for name, value in zip(mapping, values, strict=False):
        if name is not None and value is not None:
            out[name] = float(value)
    return out


# --------------------------------------------------------------------------------------------
# Probability readout


#: "asked" is shown beside "got" when they differ by more than this (probability units).
ASKED_SHOWN_ABOVE = 0.1


def probability_chart_html(
    before: Mapping[str, float],
    after: Mapping[str, float] | None = None,
    *,
    asked: Mapping[str, float] | None = None,
    order: Sequence[str] | None = None,
    highlight: Iterable[str] = (),
    after_label: str = "after",
) -> str:
    """A compact before/after bar chart of attribute probabilities as self-contained HTML.

    Grey bar: the encoded face; coloured bar: the result, *measured on the rendered image*
    (``after``). Where the edited code asked for something else (``asked``, the classifier on
    the code) by more than :data:`ASKED_SHOWN_ABOVE`, a dark tick marks what was asked and
    the row says "asked N%": the picture did not follow. Attributes in ``highlight`` (the
    ones moved by the user) are listed first and in bold.
    """
    if not before:
        return "<div class='prob-chart prob-empty'>Upload a photo to see attribute probabilities.</div>"
    names = list(order or before)
    moved = [n for n in names if n in set(highlight)]
    names = moved + [n for n in names if n not in moved]
    rows = []
    any_asked = False
    for name in names:
        b = float(before.get(name, 0.0))
        a = None if after is None else float(after.get(name, b))
        wanted = None if asked is None or a is None else asked.get(name)
        differs = wanted is not None and abs(float(wanted) - a) > ASKED_SHOWN_ABOVE
        any_asked = any_asked or differs
        label = html.escape(attribute_label(name))
        bold = " prob-moved" if name in moved else ""
        after_bar = (
            f"<div class='prob-bar prob-after' style='width:{100 * a:.1f}%'></div>"
            if a is not None
            else ""
        )
        tick = (
            f"<div class='prob-asked' style='left:{100 * float(wanted):.1f}%'></div>"
            if differs
            else ""
        )
        value = f"{100 * b:.0f}%" if a is None else f"{100 * b:.0f}% → {100 * a:.0f}%"
        if differs:
            value += f"<br><span class='prob-asked-text'>asked {100 * float(wanted):.0f}%</span>"
        rows.append(
            f"<div class='prob-row{bold}' data-attribute='{html.escape(name)}'>"
            f"<span class='prob-name'>{label}</span>"
            f"<div class='prob-track'><div class='prob-bar prob-before' "
            f"style='width:{100 * b:.1f}%'></div>{after_bar}{tick}</div>"
            f"<span class='prob-value'>{value}</span></div>"
        )
    legend = (
        "<div class='prob-legend'><span class='prob-key prob-before'></span>before"
        + (
            f"<span class='prob-key prob-after'></span>{html.escape(after_label)} "
            "(measured on the result)"
            if after is not None
            else ""
        )
        + ("<span class='prob-key prob-asked-key'></span>asked" if any_asked else "")
        + "</div>"
    )
    return f"<div class='prob-chart'>{legend}{''.join(rows)}</div>"


CSS = """
.prob-chart { font-size: 0.85em; }
.prob-row { display: grid; grid-template-columns: 10.5em 1fr 6.5em; gap: 0.5em;
            align-items: center; margin: 1px 0; }
.prob-moved .prob-name { font-weight: 700; }
.prob-track { position: relative; height: 0.9em; background: var(--block-background-fill);
              border: 1px solid var(--border-color-primary); border-radius: 3px; }
.prob-bar { position: absolute; left: 0; border-radius: 2px; }
.prob-before { top: 0; height: 45%; background: #9ca3af; }
.prob-after { bottom: 0; height: 55%; background: #f97316; }
.prob-value { text-align: right; font-variant-numeric: tabular-nums; line-height: 1.1; }
.prob-asked { position: absolute; top: -2px; bottom: -2px; width: 2px; margin-left: -1px;
              background: var(--body-text-color); }
.prob-asked-text { font-size: 0.85em; color: var(--body-text-color-subdued); }
.prob-key.prob-asked-key { background: var(--body-text-color); width: 2px; }
.prob-legend { margin-bottom: 0.3em; }
.prob-key { display: inline-block; position: static; width: 1.2em; height: 0.7em;
            margin: 0 0.3em 0 0.8em; }
.prob-key.prob-before, .prob-key.prob-after { position: static; }
/* An attribute whose edit misses the target on this model: still usable, visibly doubtful. */
.attr-unreliable { opacity: 0.55; }
.attr-unreliable label span { font-style: italic; }
#studio-header .demo-note { color: var(--body-text-color-subdued); }
#aligned-crop img, #reconstruction img, #edited-crop img, #interp-gif img {
  width: 100%; height: 100%; object-fit: contain; }
#interp-strip img { width: 100%; height: auto; }
/* Before/after: Gradio sizes the two layers by their natural aspect (taller than the box for
   portraits) and centres only one of them, so they sat apart and the face was cut off. Both
   layers fill the same box and letterbox the photo the same way. */
#compare .content img { width: 100% !important; height: 100% !important;
  max-height: none !important; object-fit: contain !important; }
#compare .content img.fixed { top: 0 !important; left: 0 !important; }
"""

# Client-side slider search. Matching is on the label (and the elem_id); hiding is done by a
# <style> element keyed on elem_ids, which survives the components' own re-renders. Gradio
# renders a collapsed accordion's sliders only once it is opened, so a query opens every
# group first, then filters (again once the newly opened groups have rendered), and hides
# the groups left without a match.
SEARCH_JS = """
(query) => {
  const q = (query || "").trim().toLowerCase();
  let style = document.getElementById("slider-search-style");
  if (!style) {
    style = document.createElement("style");
    style.id = "slider-search-style";
    document.head.appendChild(style);
  }
  const groups = [...document.querySelectorAll(".attr-group")];
  if (q) groups.forEach((acc) => {
    const content = acc.querySelector("[data-testid='accordion-content']");
    const button = acc.querySelector("button.label-wrap");
    if (button && (!content || getComputedStyle(content).display === "none")) button.click();
  });
  const apply = () => {
    const rules = [];
    const matches = (el) => {
      const label = (el.querySelector("label")?.textContent || "").toLowerCase();
      return !q || label.includes(q) || el.id.toLowerCase().includes(q.replace(/ /g, "_"));
    };
    document.querySelectorAll("[id^='attr-'].block").forEach((el) => {
      if (!matches(el)) rules.push("#" + CSS.escape(el.id));
    });
    if (q) groups.forEach((acc) => {
      const hit = [...acc.querySelectorAll("[id^='attr-'].block")].some(matches);
      if (!hit && acc.id) rules.push("#" + CSS.escape(acc.id));
    });
    style.textContent = rules.length ? rules.join(", ") + " { display: none !important; }" : "";
  };
  apply();
  setTimeout(apply, 150);
  setTimeout(apply, 600);
  return query;
}
"""
