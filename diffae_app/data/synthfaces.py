"""SynthFaces: a deterministic procedural face generator with ground-truth attributes.

No face data set or pretrained weights can be downloaded where this project is built, so the
bundled default model ("SynthFaces-64") is trained on faces drawn here. The generator is also the
truth source for editing: every image comes with the attribute vector it was drawn from, and
``FaceSpec.with_attributes`` draws the *same* face with one attribute changed.

Geometry (fractions of the image side, x right, y down) follows an FFHQ-aligned crop, so the
aligner's conventions hold: eye centres at about (0.375, 0.475) and (0.625, 0.475), mouth centre
at about (0.5, 0.725), face oval spanning x 0.22-0.78 and y 0.25-0.92, hair above and around it,
background behind. Faces are drawn with PIL at 4x the output size and reduced with a box (area)
filter, which is the anti-aliasing.

Attributes use the CelebA(-HQ) names where the meaning matches, so the same UI serves the FFHQ256
attribute classifier. ``ATTRIBUTES`` fixes the order of the label vector; the design frequencies
are in ``ATTRIBUTE_FREQUENCIES``:

==================== ====== ===============================================================
name                 freq   what is drawn
==================== ====== ===============================================================
Smiling              0.45   wide mouth (0.25 of the side) with corners lifted; else 0.17 flat
Mouth_Slightly_Open  0.40   dark opening between the lips; else a thin lip seam
Eyeglasses           0.30   thick frames (dark on light skin, silver on dark) + tinted lenses
Bangs                0.30   hair over the forehead down to the brows; else hairline at y 0.31
Black_Hair           0.25   \
Blond_Hair           0.25    | hair colour: exactly one of the four (a categorical draw)
Brown_Hair           0.25    |
Gray_Hair            0.25   /
Bald                 0.20   skin-coloured scalp with a highlight, short hair tufts at the sides
Wearing_Hat          0.25   saturated hat (crown, band, brim) covering the top of the head
Beard                0.30   lower face (y > 0.655) in a darkened hair colour; CelebA's No_Beard
                            inverted (to drive the FFHQ256 classifier, use -No_Beard)
Pale_Skin            0.25   very light, low-saturation skin; else a tone from dark to light-medium
Narrow_Eyes          0.25   eyes are dark slits with no white showing; else white + dark iris
Wearing_Lipstick     0.35   strong red lips; else lips a half mix of skin and brown-pink
Rosy_Cheeks          0.25   distinct red patches on both cheeks
==================== ====== ===============================================================

Attributes are drawn independently except where an image could not show them both:

* the four hair colours are mutually exclusive and one of them is always set; the colour stays
  readable in every face because side hair (or, when bald, side tufts) and the brows show it;
* ``Bald`` excludes ``Bangs`` (no hair on top) and ``Wearing_Hat`` (a hat would hide the scalp).
  It is drawn only when neither is set, with probability 0.20 / (0.75 * 0.70), so its overall
  frequency is still 0.20;
* under a hat the hairline is hidden, but the forehead between the brim (y 0.27) and the brows
  shows either skin or bangs, so ``Bangs`` keeps its meaning "hair covers the forehead".

Continuous nuisance factors (face width, skin tone, hair length and shade, eye spacing, small
position/scale/roll/yaw jitter, a lighting gradient, background/hat/clothes colours) vary freely
so the semantic code has real work to do; they never change a label.

Split convention: training uses seeds in ``[0, TRAIN_SEED_END)`` = [0, 1_000_000); held-out
evaluation (the judge's accuracy, editing metrics) uses seeds from ``HELDOUT_SEED_START`` =
10_000_000 on, so no evaluation face was ever a training face.
"""

from __future__ import annotations

import colorsys
import csv
import dataclasses
import math
import os
import types
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch.utils.data import Dataset

__all__ = [
    "ATTRIBUTES",
    "ATTRIBUTE_FREQUENCIES",
    "HAIR_COLOURS",
    "HELDOUT_SEED_START",
    "SUPERSAMPLE",
    "TRAIN_SEED_END",
    "FaceSpec",
    "InvalidFaceSpec",
    "SynthFaces",
    "generate",
    "generate_batch",
    "read_attributes_csv",
    "render_face",
    "sample_spec",
    "write_image_folder",
]

ATTRIBUTES: tuple[str, ...] = (
    "Smiling",
    "Mouth_Slightly_Open",
    "Eyeglasses",
    "Bangs",
    "Black_Hair",
    "Blond_Hair",
    "Brown_Hair",
    "Gray_Hair",
    "Bald",
    "Wearing_Hat",
    "Beard",
    "Pale_Skin",
    "Narrow_Eyes",
    "Wearing_Lipstick",
    "Rosy_Cheeks",
)
"""CelebA-HQ attribute names in label-vector order (``Beard`` is CelebA's ``No_Beard`` inverted)."""

ATTRIBUTE_FREQUENCIES: Mapping[str, float] = types.MappingProxyType(
    {
        "Smiling": 0.45,
        "Mouth_Slightly_Open": 0.40,
        "Eyeglasses": 0.30,
        "Bangs": 0.30,
        "Black_Hair": 0.25,
        "Blond_Hair": 0.25,
        "Brown_Hair": 0.25,
        "Gray_Hair": 0.25,
        "Bald": 0.20,
        "Wearing_Hat": 0.25,
        "Beard": 0.30,
        "Pale_Skin": 0.25,
        "Narrow_Eyes": 0.25,
        "Wearing_Lipstick": 0.35,
        "Rosy_Cheeks": 0.25,
    }
)
"""Design probability that each attribute is 1 in ``sample_spec`` (read-only)."""

HAIR_COLOURS: tuple[str, ...] = ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair")
"""The mutually exclusive hair-colour attributes; exactly one is set in every face."""

TRAIN_SEED_END = 1_000_000
"""Training seeds are ``[0, TRAIN_SEED_END)``."""

HELDOUT_SEED_START = 10_000_000
"""Held-out evaluation seeds start here (never used for training)."""

SUPERSAMPLE = 4
"""Faces are drawn at ``SUPERSAMPLE * size`` pixels and box-reduced (the anti-aliasing)."""

# Bald is only possible without hat and bangs; this conditional probability makes its marginal
# frequency equal ATTRIBUTE_FREQUENCIES["Bald"].
_P_BALD_GIVEN_ALLOWED = ATTRIBUTE_FREQUENCIES["Bald"] / (
    (1.0 - ATTRIBUTE_FREQUENCIES["Wearing_Hat"]) * (1.0 - ATTRIBUTE_FREQUENCIES["Bangs"])
)

# Fixed anchor points of the layout (fractions of the side, before the pose jitter).
_FACE_CX, _FACE_CY, _FACE_RY = 0.5, 0.585, 0.335
_EYE_Y, _MOUTH_Y, _BROW_Y = 0.475, 0.725, 0.405
_HAIRLINE_Y, _BANGS_Y = 0.31, 0.39
_BEARD_TOP_Y = 0.655
_HAT_BRIM_TOP, _HAT_BRIM_BOTTOM = 0.225, 0.27
_POSE_CENTRE = (0.5, 0.55)

# Colours are RGB 0-255. Non-pale skin runs dark -> light-medium; Pale_Skin is a separate, much
# lighter and less saturated band, so the two never overlap even under the lighting gradient.
_SKIN_ANCHORS = np.array([(135, 88, 60), (192, 138, 102), (228, 182, 146)], dtype=np.float64)
_PALE_SKIN_RANGE = np.array([(246, 226, 214), (253, 238, 230)], dtype=np.float64)
# Hair colours are chosen to stay far from every skin tone, else Bald/Bangs would be unreadable.
_HAIR_BASE: Mapping[str, tuple[int, int, int]] = types.MappingProxyType(
    {
        "Black_Hair": (24, 21, 20),
        "Blond_Hair": (224, 186, 84),
        "Brown_Hair": (84, 48, 24),
        "Gray_Hair": (160, 160, 164),
    }
)
_LIPSTICK = (204, 22, 46)
_CHEEK_RED = (232, 48, 72)
_MOUTH_DARK = (52, 14, 20)

# Unit circle used for every ellipse polygon; read-only so it cannot become shared mutable state.
_CIRCLE_POINTS = 48
_UNIT_CIRCLE = np.stack(
    [
        np.cos(np.linspace(0.0, 2.0 * np.pi, _CIRCLE_POINTS, endpoint=False)),
        np.sin(np.linspace(0.0, 2.0 * np.pi, _CIRCLE_POINTS, endpoint=False)),
    ],
    axis=1,
)
_UNIT_CIRCLE.flags.writeable = False

Colour = tuple[int, int, int]


class InvalidFaceSpec(ValueError):
    """A ``FaceSpec`` breaks a rule of the generator (exclusive attributes, ranges, names)."""


# Nuisance fields and their allowed closed ranges; all are plain floats.
_NUISANCE_RANGES: Mapping[str, tuple[float, float]] = types.MappingProxyType(
    {
        "face_width": (-1.0, 1.0),
        "skin_tone": (0.0, 1.0),
        "hair_length": (0.0, 1.0),
        "hair_shade": (-1.0, 1.0),
        "eye_spacing": (-1.0, 1.0),
        "shift_x": (-1.0, 1.0),
        "shift_y": (-1.0, 1.0),
        "scale": (-1.0, 1.0),
        "roll": (-1.0, 1.0),
        "yaw": (-1.0, 1.0),
        "light_strength": (0.0, 1.0),
        "light_angle": (0.0, 1.0),
        "background_hue": (0.0, 1.0),
        "background_saturation": (0.0, 1.0),
        "background_value": (0.0, 1.0),
        "hat_hue": (0.0, 1.0),
        "clothes_hue": (0.0, 1.0),
        "clothes_value": (0.0, 1.0),
    }
)


@dataclass(frozen=True)
class FaceSpec:
    """Everything needed to draw one face: 15 boolean attributes and continuous nuisances.

    Attribute fields are the lower-cased names in ``ATTRIBUTES`` (``Mouth_Slightly_Open`` ->
    ``mouth_slightly_open``). Nuisance fields are floats in the ranges given below; they change
    the look of a face but never its labels.

    Attributes:
        face_width: [-1, 1], face oval half-width 0.28 +- 0.025 of the side.
        skin_tone: [0, 1], dark -> light-medium (or, with ``pale_skin``, a narrow pale band).
        hair_length: [0, 1], back hair ends at y = 0.60 (short) ... 1.0 (long).
        hair_shade: [-1, 1], +-10 % brightness of the hair colour.
        eye_spacing: [-1, 1], eye centres 0.125 +- 0.012 from the middle.
        shift_x, shift_y: [-1, 1], whole-face shift of +-0.02 of the side.
        scale: [-1, 1], whole-face scale 1 +- 0.04.
        roll: [-1, 1], in-plane rotation of +-3 degrees.
        yaw: [-1, 1], inner features (eyes, nose, mouth) shifted +-0.015 sideways.
        light_strength: [0, 1], brightness gradient of up to +-12 % across the image.
        light_angle: [0, 1), direction of the gradient as a fraction of a full turn.
        background_hue, background_saturation, background_value: [0, 1], muted background.
        hat_hue: [0, 1], hue of the (always saturated) hat within green..magenta.
        clothes_hue, clothes_value: [0, 1], colour of the clothes at the bottom edge.
    """

    smiling: bool
    mouth_slightly_open: bool
    eyeglasses: bool
    bangs: bool
    black_hair: bool
    blond_hair: bool
    brown_hair: bool
    gray_hair: bool
    bald: bool
    wearing_hat: bool
    beard: bool
    pale_skin: bool
    narrow_eyes: bool
    wearing_lipstick: bool
    rosy_cheeks: bool
    face_width: float = 0.0
    skin_tone: float = 0.5
    hair_length: float = 0.5
    hair_shade: float = 0.0
    eye_spacing: float = 0.0
    shift_x: float = 0.0
    shift_y: float = 0.0
    scale: float = 0.0
    roll: float = 0.0
    yaw: float = 0.0
    light_strength: float = 0.0
    light_angle: float = 0.0
    background_hue: float = 0.55
    background_saturation: float = 0.2
    background_value: float = 0.7
    hat_hue: float = 0.5
    clothes_hue: float = 0.6
    clothes_value: float = 0.5

    def __post_init__(self) -> None:
        for name in ATTRIBUTES:
            if not isinstance(getattr(self, name.lower()), bool):
                raise InvalidFaceSpec(f"{name} must be a bool, got {getattr(self, name.lower())!r}")
        hair = [name for name in HAIR_COLOURS if getattr(self, name.lower())]
        if len(hair) != 1:
            raise InvalidFaceSpec(
                f"exactly one of {HAIR_COLOURS} must be True, got {hair or 'none'}; "
                "set the wanted colour True (with_attributes clears the others)"
            )
        if self.bald and self.bangs:
            raise InvalidFaceSpec("Bald and Bangs are exclusive (no hair on top); unset one")
        if self.bald and self.wearing_hat:
            raise InvalidFaceSpec("Bald and Wearing_Hat are exclusive (a hat hides the scalp)")
        for name, (low, high) in _NUISANCE_RANGES.items():
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not (low <= value <= high):
                raise InvalidFaceSpec(f"{name} must be a number in [{low}, {high}], got {value!r}")

    def attributes(self) -> dict[str, bool]:
        """The labels as ``{CelebA name: bool}`` in ``ATTRIBUTES`` order."""
        return {name: getattr(self, name.lower()) for name in ATTRIBUTES}

    def attribute_vector(self) -> np.ndarray:
        """The labels as an int8 vector of shape (len(ATTRIBUTES),), values in {0, 1}."""
        return np.array([getattr(self, name.lower()) for name in ATTRIBUTES], dtype=np.int8)

    def hair_colour(self) -> str:
        """The one hair-colour attribute that is set, e.g. ``"Blond_Hair"``."""
        return next(name for name in HAIR_COLOURS if getattr(self, name.lower()))

    def with_attributes(self, **changes: bool | float) -> FaceSpec:
        """The same face with some fields changed (a counterfactual variant).

        Keys are CelebA attribute names (``Smiling=True``) or ``FaceSpec`` field names
        (``smiling=True``, ``skin_tone=0.1``). Setting a hair colour to True clears the other
        three, because they are one categorical choice. Combinations the generator forbids
        (Bald with Bangs or Wearing_Hat, no hair colour) raise ``InvalidFaceSpec``.
        """
        fields = {field.name for field in dataclasses.fields(self)}
        resolved: dict[str, bool | float] = {}
        for key, value in changes.items():
            name = key.lower() if key in ATTRIBUTES else key
            if name not in fields:
                raise InvalidFaceSpec(
                    f"unknown attribute or field {key!r}; use one of {ATTRIBUTES} or a field name"
                )
            resolved[name] = value
        for colour in HAIR_COLOURS:
            if resolved.get(colour.lower()) is True:
                for other in HAIR_COLOURS:
                    resolved.setdefault(other.lower(), other == colour)
        return dataclasses.replace(self, **resolved)


def sample_spec(seed: int) -> FaceSpec:
    """Draw the face of ``seed`` (deterministic; uses its own ``numpy.random.Generator``).

    Args:
        seed: non-negative integer; see ``TRAIN_SEED_END`` / ``HELDOUT_SEED_START`` for splits.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    rng = np.random.default_rng(int(seed))
    # The order of draws is part of the data set's definition: never reorder, only append.
    u = rng.random(16)
    freq = ATTRIBUTE_FREQUENCIES
    hair_index = int(u[4] * len(HAIR_COLOURS))
    hat = bool(u[9] < freq["Wearing_Hat"])
    bangs = bool(u[3] < freq["Bangs"])
    bald = bool(not hat and not bangs and u[8] < _P_BALD_GIVEN_ALLOWED)
    nuisance = rng.random(len(_NUISANCE_RANGES))
    values = {
        name: float(low + (high - low) * x)
        for (name, (low, high)), x in zip(_NUISANCE_RANGES.items(), nuisance, strict=True)
    }
    return FaceSpec(
        smiling=bool(u[0] < freq["Smiling"]),
        mouth_slightly_open=bool(u[1] < freq["Mouth_Slightly_Open"]),
        eyeglasses=bool(u[2] < freq["Eyeglasses"]),
        bangs=bangs,
        black_hair=hair_index == 0,
        blond_hair=hair_index == 1,
        brown_hair=hair_index == 2,
        gray_hair=hair_index == 3,
        bald=bald,
        wearing_hat=hat,
        beard=bool(u[10] < freq["Beard"]),
        pale_skin=bool(u[11] < freq["Pale_Skin"]),
        narrow_eyes=bool(u[12] < freq["Narrow_Eyes"]),
        wearing_lipstick=bool(u[13] < freq["Wearing_Lipstick"]),
        rosy_cheeks=bool(u[14] < freq["Rosy_Cheeks"]),
        **values,
    )


# --------------------------------------------------------------------------------------------
# Drawing


def _mix(a: Sequence[float], b: Sequence[float], t: float) -> Colour:
    """Linear blend ``(1 - t) * a + t * b`` of two RGB colours, rounded to ints."""
    r, g, b_ = ((1.0 - t) * x + t * y for x, y in zip(a, b, strict=True))
    return (round(r), round(g), round(b_))


def _scaled(colour: Sequence[float], factor: float) -> Colour:
    """``colour * factor`` clipped to 0..255 (factor < 1 darkens)."""
    r, g, b = (min(255.0, max(0.0, x * factor)) for x in colour)
    return (round(r), round(g), round(b))


def _hsv(h: float, s: float, v: float) -> Colour:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return (int(round(r * 255)), int(round(g * 255)), int(round(b * 255)))


def _skin_colour(spec: FaceSpec) -> Colour:
    if spec.pale_skin:
        low, high = _PALE_SKIN_RANGE
        return _mix(low, high, spec.skin_tone)
    position = spec.skin_tone * (len(_SKIN_ANCHORS) - 1)
    index = min(int(position), len(_SKIN_ANCHORS) - 2)
    return _mix(_SKIN_ANCHORS[index], _SKIN_ANCHORS[index + 1], position - index)


def _ellipse(cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    return np.array([cx, cy]) + _UNIT_CIRCLE * np.array([rx, ry])


def _upper_cap(cx: float, cy: float, rx: float, ry: float, x_line: np.ndarray) -> np.ndarray:
    """Points of the ellipse's top arc above the x range ``x_line`` (ascending), shape (N, 2)."""
    t = np.clip((x_line - cx) / rx, -1.0, 1.0)
    return np.stack([x_line, cy - ry * np.sqrt(1.0 - t * t)], axis=1)


def _half_width(rx: float, ry: float, cy: float, y: float) -> float:
    """Half-width of the ellipse (centre y ``cy``, radii rx, ry) at height ``y`` (0 outside)."""
    t = (y - cy) / ry
    return rx * math.sqrt(max(0.0, 1.0 - t * t))


class _Painter:
    """Draws unit-square polygons onto a supersampled canvas through the face's pose transform."""

    def __init__(self, image: Image.Image, spec: FaceSpec) -> None:
        self.draw = ImageDraw.Draw(image)
        self.side = float(image.size[0])
        angle = math.radians(3.0 * spec.roll)
        scale = 1.0 + 0.04 * spec.scale
        cos, sin = math.cos(angle) * scale, math.sin(angle) * scale
        # p' = centre + scale * R(angle) (p - centre) + shift, in unit coordinates.
        self.matrix = np.array([[cos, -sin], [sin, cos]])
        self.centre = np.array(_POSE_CENTRE)
        self.offset = self.centre + 0.02 * np.array([spec.shift_x, spec.shift_y])

    def _to_pixels(self, points: np.ndarray) -> list[float]:
        """(N, 2) unit points -> flat [x0, y0, x1, y1, ...] canvas pixels (PIL's fast form)."""
        unit = (points - self.centre) @ self.matrix.T + self.offset
        return (unit * self.side).ravel().tolist()

    def polygon(self, points: np.ndarray, fill: Colour) -> None:
        self.draw.polygon(self._to_pixels(points), fill=fill)

    def line(self, points: np.ndarray, fill: Colour, width: float, closed: bool = False) -> None:
        pixels = self._to_pixels(points)
        if closed:
            pixels += pixels[:2]
        self.draw.line(
            pixels, fill=fill, width=max(1, int(round(width * self.side))), joint="curve"
        )


def _draw_background_and_body(p: _Painter, spec: FaceSpec, skin: Colour, face_rx: float) -> None:
    p.polygon(
        _ellipse(0.5, 1.2, 0.46, 0.31), _hsv(spec.clothes_hue, 0.55, 0.3 + 0.4 * spec.clothes_value)
    )
    neck_half = 0.36 * face_rx
    neck = np.array(
        [
            [0.5 - neck_half, 0.7],
            [0.5 + neck_half, 0.7],
            [0.5 + neck_half, 1.05],
            [0.5 - neck_half, 1.05],
        ]
    )
    p.polygon(neck, _scaled(skin, 0.8))


def _draw_back_hair(
    p: _Painter, spec: FaceSpec, hair: Colour, skin: Colour, face_rx: float
) -> None:
    head_cy = 0.47
    if spec.bald:
        # Scalp continues the face; the highlight reads as a shiny bald head.
        p.polygon(_ellipse(0.5, head_cy, face_rx + 0.005, 0.315), skin)
        p.polygon(_ellipse(0.44, 0.235, 0.07, 0.035), _mix(skin, (255, 255, 255), 0.35))
        return
    rx = face_rx + 0.055
    p.polygon(_ellipse(0.5, head_cy, rx, 0.34), hair)
    bottom = 0.6 + 0.4 * spec.hair_length
    back = np.array(
        [
            [0.5 - rx, head_cy],
            [0.5 + rx, head_cy],
            [0.5 + rx, bottom],
            [0.5 + rx - 0.04, bottom + 0.02],
            [0.5 - rx + 0.04, bottom + 0.02],
            [0.5 - rx, bottom],
        ]
    )
    p.polygon(back, hair)


def _draw_hair_front(p: _Painter, spec: FaceSpec, hair: Colour, face_rx: float) -> None:
    if spec.bald:
        # Short tufts over the ears keep the hair colour readable on a bald head.
        for side in (-1.0, 1.0):
            p.polygon(_ellipse(0.5 + side * (face_rx - 0.005), 0.47, 0.04, 0.085), hair)
        return
    line_y = _BANGS_Y if spec.bangs else _HAIRLINE_Y
    half = _half_width(face_rx, _FACE_RY, _FACE_CY, line_y)
    x_top = np.linspace(_FACE_CX - half, _FACE_CX + half, 24)
    cap = _upper_cap(_FACE_CX, _FACE_CY, face_rx, _FACE_RY, x_top)
    x_back = x_top[::-1]
    if spec.bangs:
        # A jagged fringe edge: teeth alternate 0.012 below and 0.008 above the bangs line.
        teeth = np.where(np.arange(x_back.size) % 2 == 0, 0.012, -0.008)
        edge = np.stack([x_back, line_y + teeth], axis=1)
    else:
        # The hairline is highest in the middle and comes down at the temples.
        rel = (x_back - _FACE_CX) / max(half, 1e-6)
        edge = np.stack([x_back, line_y - 0.02 * (1.0 - rel * rel)], axis=1)
    p.polygon(np.concatenate([cap, edge]), hair)


def _draw_hat(p: _Painter, spec: FaceSpec, face_rx: float) -> None:
    colour = _hsv(0.22 + 0.72 * spec.hat_hue, 0.8, 0.78)  # green..magenta: never hair-like
    crown_cy, crown_rx, crown_ry = _HAT_BRIM_BOTTOM - 0.02, face_rx + 0.065, 0.2
    x = np.linspace(_FACE_CX - crown_rx, _FACE_CX + crown_rx, 32)
    crown = _upper_cap(_FACE_CX, crown_cy, crown_rx, crown_ry, x)
    p.polygon(
        np.concatenate([crown, [[x[-1], _HAT_BRIM_TOP + 0.01], [x[0], _HAT_BRIM_TOP + 0.01]]]),
        colour,
    )
    band_top, band_bottom = _HAT_BRIM_TOP - 0.055, _HAT_BRIM_TOP - 0.02
    top_half = _half_width(crown_rx, crown_ry, crown_cy, band_top)
    bottom_half = _half_width(crown_rx, crown_ry, crown_cy, band_bottom)
    band = np.array(
        [
            [0.5 - top_half, band_top],
            [0.5 + top_half, band_top],
            [0.5 + bottom_half, band_bottom],
            [0.5 - bottom_half, band_bottom],
        ]
    )
    p.polygon(band, _scaled(colour, 0.55))
    brim_half = face_rx + 0.1
    brim = np.array(
        [
            [0.5 - brim_half, _HAT_BRIM_TOP],
            [0.5 + brim_half, _HAT_BRIM_TOP],
            [0.5 + brim_half + 0.01, _HAT_BRIM_BOTTOM],
            [0.5 - brim_half - 0.01, _HAT_BRIM_BOTTOM],
        ]
    )
    p.polygon(brim, _scaled(colour, 0.85))


def _draw_eyes_and_glasses(
    p: _Painter, spec: FaceSpec, skin: Colour, hair: Colour, face_rx: float
) -> None:
    feature_dx = 0.015 * spec.yaw
    eye_dx = 0.125 + 0.012 * spec.eye_spacing
    centres = [(_FACE_CX - eye_dx + feature_dx, _EYE_Y), (_FACE_CX + eye_dx + feature_dx, _EYE_Y)]
    lens_rx, lens_ry, lens_cy = 0.085, 0.062, _EYE_Y + 0.005
    if spec.eyeglasses:
        # Lenses first (a light tint over the skin), so eyes and brows stay visible through them.
        tint = _mix(skin, (215, 232, 245), 0.35)
        for cx, _ in centres:
            p.polygon(_ellipse(cx, lens_cy, lens_rx, lens_ry), tint)
    for cx, cy in centres:
        if spec.narrow_eyes:
            p.polygon(_ellipse(cx, cy, 0.052, 0.008), (40, 26, 22))
        else:
            p.polygon(_ellipse(cx, cy, 0.052, 0.03), (246, 246, 244))
            p.polygon(_ellipse(cx, cy, 0.025, 0.025), (58, 38, 30))
            lid = _upper_cap(cx, cy, 0.052, 0.03, np.linspace(cx - 0.052, cx + 0.052, 12))
            p.line(lid, (40, 26, 22), 0.009)
        brow_x = np.linspace(cx - 0.06, cx + 0.06, 9)
        arch = _BROW_Y - 0.012 * (1.0 - ((brow_x - cx) / 0.06) ** 2)
        brow = np.concatenate(
            [np.stack([brow_x, arch - 0.01], 1), np.stack([brow_x[::-1], arch[::-1] + 0.01], 1)]
        )
        p.polygon(brow, _scaled(hair, 0.8))
    if spec.eyeglasses:
        # Frames must contrast with the skin under them: dark on light skin, silver on dark.
        luminance = 0.299 * skin[0] + 0.587 * skin[1] + 0.114 * skin[2]
        frame = (24, 24, 30) if luminance > 125 else (222, 222, 230)
        width = 0.024
        for cx, _ in centres:
            p.line(_ellipse(cx, lens_cy, lens_rx, lens_ry), frame, width, closed=True)
        (left_x, _), (right_x, _) = centres
        bridge_y = lens_cy - 0.012
        p.line(
            np.array([[left_x + lens_rx, bridge_y], [right_x - lens_rx, bridge_y]]), frame, width
        )
        edge = face_rx * 0.97
        p.line(
            np.array([[left_x - lens_rx, bridge_y], [_FACE_CX - edge, bridge_y - 0.01]]),
            frame,
            width,
        )
        p.line(
            np.array([[right_x + lens_rx, bridge_y], [_FACE_CX + edge, bridge_y - 0.01]]),
            frame,
            width,
        )


def _draw_mouth(p: _Painter, spec: FaceSpec, skin: Colour) -> None:
    cx = _FACE_CX + 0.015 * spec.yaw
    half_width, lift = (0.125, 0.035) if spec.smiling else (0.085, 0.0)
    u = np.linspace(-1.0, 1.0, 25)
    centre_y = _MOUTH_Y + lift * (1.0 / 3.0) - lift * u * u  # corners up by `lift`, centre kept
    envelope = np.sqrt(1.0 - u * u)  # lip thickness tapers to the corners
    if spec.mouth_slightly_open:
        open_top, open_bottom = (0.012, 0.03) if spec.smiling else (0.02, 0.022)
    else:
        open_top = open_bottom = 0.0
    opening = 1.0 - u * u
    x = cx + half_width * u
    top = centre_y - open_top * opening - 0.017 * envelope
    bottom = centre_y + open_bottom * opening + 0.022 * envelope
    lips = _LIPSTICK if spec.wearing_lipstick else _mix(skin, (150, 60, 70), 0.5)
    p.polygon(np.concatenate([np.stack([x, top], 1), np.stack([x[::-1], bottom[::-1]], 1)]), lips)
    if spec.mouth_slightly_open:
        inner_top = centre_y - open_top * opening
        inner_bottom = centre_y + open_bottom * opening
        p.polygon(
            np.concatenate(
                [np.stack([x, inner_top], 1), np.stack([x[::-1], inner_bottom[::-1]], 1)]
            ),
            _MOUTH_DARK,
        )
    else:
        p.line(np.stack([x, centre_y], 1), _scaled(lips, 0.55), 0.007)


def render_face(spec: FaceSpec, size: int = 64) -> np.ndarray:
    """Draw ``spec`` as an RGB image.

    Args:
        spec: the face to draw.
        size: output side in pixels (64 is the bundled model's size; 128/256 also work; >= 16).

    Returns:
        uint8 array of shape (size, size, 3), values 0-255. Drawn at ``SUPERSAMPLE * size`` and
        box-reduced, then the lighting gradient is applied.
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 16 <= size <= 2048:
        raise ValueError(f"size must be an integer in [16, 2048], got {size!r}")
    size = int(size)
    background = _hsv(
        spec.background_hue, 0.35 * spec.background_saturation, 0.45 + 0.45 * spec.background_value
    )
    image = Image.new("RGB", (size * SUPERSAMPLE, size * SUPERSAMPLE), background)
    p = _Painter(image, spec)
    skin = _skin_colour(spec)
    hair = _scaled(_HAIR_BASE[spec.hair_colour()], 1.0 + 0.1 * spec.hair_shade)
    face_rx = 0.28 + 0.025 * spec.face_width
    feature_dx = 0.015 * spec.yaw

    # Back to front: body, hair behind the head, face, things on the face, hat last.
    _draw_background_and_body(p, spec, skin, face_rx)
    _draw_back_hair(p, spec, hair, skin, face_rx)
    p.polygon(_ellipse(_FACE_CX, _FACE_CY, face_rx, _FACE_RY), skin)
    if spec.rosy_cheeks:
        cheek = _mix(skin, _CHEEK_RED, 0.7)
        for side in (-1.0, 1.0):
            p.polygon(_ellipse(_FACE_CX + side * 0.17 + feature_dx, 0.605, 0.055, 0.038), cheek)
    if spec.beard:
        half = _half_width(face_rx, _FACE_RY, _FACE_CY, _BEARD_TOP_Y)
        x = np.linspace(_FACE_CX - half, _FACE_CX + half, 24)
        lower = np.stack(
            [
                x[::-1],
                2 * _FACE_CY - _upper_cap(_FACE_CX, _FACE_CY, face_rx, _FACE_RY, x[::-1])[:, 1],
            ],
            1,
        )
        p.polygon(
            np.concatenate([[[x[0], _BEARD_TOP_Y], [x[-1], _BEARD_TOP_Y]], lower]),
            _scaled(hair, 0.78),
        )
    nose = np.array(
        [
            [_FACE_CX + feature_dx, 0.55],
            [_FACE_CX + feature_dx + 0.024, 0.632],
            [_FACE_CX + feature_dx - 0.024, 0.632],
        ]
    )
    p.polygon(nose, _scaled(skin, 0.84))
    _draw_hair_front(p, spec, hair, face_rx)
    _draw_eyes_and_glasses(p, spec, skin, hair, face_rx)
    _draw_mouth(p, spec, skin)
    if spec.wearing_hat:
        _draw_hat(p, spec, face_rx)

    pixels = np.asarray(image.reduce(SUPERSAMPLE), dtype=np.float32)
    if spec.light_strength > 0.0:
        # Linear brightness ramp of up to +-12 % along the light direction.
        angle = 2.0 * math.pi * spec.light_angle
        ramp = np.linspace(-1.0, 1.0, size, dtype=np.float32)
        gain = 1.0 + 0.12 * spec.light_strength * (
            math.cos(angle) * ramp[None, :] + math.sin(angle) * ramp[:, None]
        ) / math.sqrt(2.0)
        pixels = pixels * gain[:, :, None]
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Data-set level API


def generate(seed: int, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Face of ``seed``: (uint8 image (size, size, 3), int8 attributes (len(ATTRIBUTES),))."""
    spec = sample_spec(seed)
    return render_face(spec, size), spec.attribute_vector()


def generate_batch(seeds: Iterable[int], size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Faces of ``seeds``: (uint8 (N, size, size, 3), int8 (N, len(ATTRIBUTES)))."""
    seeds = list(seeds)
    images = np.empty((len(seeds), size, size, 3), dtype=np.uint8)
    labels = np.empty((len(seeds), len(ATTRIBUTES)), dtype=np.int8)
    for i, seed in enumerate(seeds):
        images[i], labels[i] = generate(seed, size)
    return images, labels


class SynthFaces(Dataset):
    """Torch data set over the consecutive seeds ``[start_seed, start_seed + length)``.

    Use ``start_seed`` in ``[0, TRAIN_SEED_END)`` for training and ``>= HELDOUT_SEED_START``
    for evaluation. Items are rendered on demand (no files), so workers need no shared state.

    Item: ``dict(image=float32 tensor (3, size, size) in [-1, 1], attributes=int8 tensor
    (len(ATTRIBUTES),), seed=int)``.
    """

    def __init__(self, start_seed: int, length: int, size: int = 64) -> None:
        if start_seed < 0 or length < 0:
            raise ValueError(f"start_seed and length must be >= 0, got {start_seed}, {length}")
        if start_seed < TRAIN_SEED_END < start_seed + length:
            raise ValueError(
                f"seeds [{start_seed}, {start_seed + length}) straddle TRAIN_SEED_END="
                f"{TRAIN_SEED_END}; keep training and held-out seeds apart"
            )
        self.start_seed = int(start_seed)
        self.length = int(length)
        self.size = int(size)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        if index < 0:
            index += self.length
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} faces")
        seed = self.start_seed + index
        image, attributes = generate(seed, self.size)
        tensor = torch.from_numpy(image).permute(2, 0, 1).float().div_(127.5).sub_(1.0)
        return {"image": tensor, "attributes": torch.from_numpy(attributes), "seed": seed}


def write_image_folder(
    out_dir: str | os.PathLike[str], start_seed: int, count: int, size: int = 64
) -> Path:
    """Write faces ``start_seed .. start_seed + count - 1`` as PNGs plus ``attributes.csv``.

    Files are named ``{seed:08d}.png``. The CSV has a header ``image_id,<ATTRIBUTES...>`` and one
    row per image: the file name, then 0/1 per attribute (the classifier-training label format).

    Returns:
        Path of the written ``attributes.csv``.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "attributes.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image_id", *ATTRIBUTES])
        for seed in range(start_seed, start_seed + count):
            image, attributes = generate(seed, size)
            name = f"{seed:08d}.png"
            # compress_level=1: the PNGs are tiny and write speed dominates for big folders.
            Image.fromarray(image).save(out / name, compress_level=1)
            writer.writerow([name, *attributes.tolist()])
    return csv_path


def read_attributes_csv(csv_path: str | os.PathLike[str]) -> tuple[list[str], np.ndarray]:
    """Read an ``attributes.csv`` written by ``write_image_folder``.

    Returns:
        (image ids in file order, int8 labels (N, len(ATTRIBUTES)) in ``ATTRIBUTES`` order).
    """
    with Path(csv_path).open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        if tuple(header[1:]) != ATTRIBUTES:
            raise ValueError(f"{csv_path}: columns {header[1:]} are not ATTRIBUTES {ATTRIBUTES}")
        ids, rows = [], []
        for row in reader:
            ids.append(row[0])
            rows.append([int(v) for v in row[1:]])
    return ids, np.array(rows, dtype=np.int8).reshape(len(ids), len(ATTRIBUTES))
