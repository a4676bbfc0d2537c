"""Tests for the SynthFaces procedural generator (diffae_app/data/synthfaces.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from diffae_app.data.synthfaces import (
    ATTRIBUTE_FREQUENCIES,
    ATTRIBUTES,
    HAIR_COLOURS,
    HELDOUT_SEED_START,
    TRAIN_SEED_END,
    FaceSpec,
    InvalidFaceSpec,
    SynthFaces,
    generate,
    generate_batch,
    read_attributes_csv,
    render_face,
    sample_spec,
    write_image_folder,
)

# A face with every attribute off, black hair and no pose jitter: flips are measured against it.
BASE = FaceSpec(**{name.lower(): name == "Black_Hair" for name in ATTRIBUTES})

# Where each flip may change pixels: (x0, y0, x1, y1) as fractions of the side. Pale_Skin
# recolours the whole face and is checked separately.
FLIP_REGIONS = {
    "Smiling": (0.3, 0.62, 0.7, 0.8),
    "Mouth_Slightly_Open": (0.35, 0.66, 0.65, 0.8),
    "Wearing_Lipstick": (0.35, 0.66, 0.65, 0.8),
    "Eyeglasses": (0.18, 0.38, 0.82, 0.58),
    "Narrow_Eyes": (0.28, 0.42, 0.72, 0.53),
    "Rosy_Cheeks": (0.25, 0.54, 0.75, 0.67),
    "Beard": (0.2, 0.63, 0.8, 0.95),
    "Bangs": (0.22, 0.2, 0.78, 0.43),
    "Bald": (0.15, 0.1, 0.85, 1.0),
    "Wearing_Hat": (0.1, 0.0, 0.9, 0.3),
    "Blond_Hair": (0.15, 0.1, 0.85, 1.0),
    "Brown_Hair": (0.15, 0.1, 0.85, 1.0),
    "Gray_Hair": (0.15, 0.1, 0.85, 1.0),
}


def changed_mask(a: np.ndarray, b: np.ndarray, threshold: int = 30) -> np.ndarray:
    """Boolean (H, W): pixels whose summed absolute RGB difference exceeds ``threshold``."""
    return np.abs(a.astype(np.int32) - b.astype(np.int32)).sum(axis=2) > threshold


def test_attribute_table_is_consistent() -> None:
    assert len(ATTRIBUTES) == len(set(ATTRIBUTES)) == 15
    assert tuple(ATTRIBUTE_FREQUENCIES) == ATTRIBUTES
    assert all(0.2 <= f <= 0.6 for f in ATTRIBUTE_FREQUENCIES.values())
    assert sum(ATTRIBUTE_FREQUENCIES[name] for name in HAIR_COLOURS) == pytest.approx(1.0)
    assert TRAIN_SEED_END <= HELDOUT_SEED_START


def test_same_seed_gives_identical_bytes() -> None:
    image_a, labels_a = generate(1234)
    image_b, labels_b = generate(1234)
    assert image_a.dtype == np.uint8 and image_a.shape == (64, 64, 3)
    assert labels_a.dtype == np.int8 and labels_a.shape == (len(ATTRIBUTES),)
    assert image_a.tobytes() == image_b.tobytes()
    assert labels_a.tobytes() == labels_b.tobytes()
    assert sample_spec(1234) == sample_spec(1234)


def test_global_random_state_is_neither_used_nor_changed() -> None:
    np.random.seed(0)
    before = np.random.get_state()[1].copy()
    image_a, _ = generate(77)
    assert np.array_equal(np.random.get_state()[1], before)
    np.random.seed(999)
    image_b, _ = generate(77)
    assert image_a.tobytes() == image_b.tobytes()


def test_different_seeds_differ() -> None:
    images, _ = generate_batch(range(20))
    flat = {image.tobytes() for image in images}
    assert len(flat) == 20
    assert all(sample_spec(s) != sample_spec(s + 1) for s in range(20))


def test_attribute_frequencies_match_the_design() -> None:
    labels = np.stack([sample_spec(seed).attribute_vector() for seed in range(2000)])
    measured = labels.mean(axis=0)
    for name, frequency in zip(ATTRIBUTES, measured, strict=True):
        assert 0.2 - 0.04 <= frequency <= 0.6 + 0.04, name
        assert abs(frequency - ATTRIBUTE_FREQUENCIES[name]) <= 0.04, (name, frequency)
    column = {name: labels[:, i] for i, name in enumerate(ATTRIBUTES)}
    hair = np.stack([column[name] for name in HAIR_COLOURS], axis=1)
    assert np.all(hair.sum(axis=1) == 1)
    assert not np.any(column["Bald"] & column["Bangs"])
    assert not np.any(column["Bald"] & column["Wearing_Hat"])
    # Attributes drawn independently stay roughly independent (e.g. Smiling vs Lipstick).
    joint = (column["Smiling"] & column["Wearing_Lipstick"]).mean()
    assert abs(joint - measured[0] * measured[ATTRIBUTES.index("Wearing_Lipstick")]) < 0.03


@pytest.mark.parametrize("name", list(FLIP_REGIONS))
def test_flipping_an_attribute_changes_only_its_region(name: str) -> None:
    flipped = BASE.with_attributes(**{name: True})
    expected = BASE.attribute_vector()
    expected[ATTRIBUTES.index(name)] = 1
    if name in HAIR_COLOURS:
        expected[ATTRIBUTES.index("Black_Hair")] = 0
    assert np.array_equal(flipped.attribute_vector(), expected)

    before, after = render_face(BASE), render_face(flipped)
    mask = changed_mask(before, after)
    assert mask.sum() >= 12, f"{name} barely changes the image ({mask.sum()} px)"
    x0, y0, x1, y1 = (round(v * 64) for v in FLIP_REGIONS[name])
    inside = mask[y0:y1, x0:x1].sum()
    assert inside >= 0.97 * mask.sum(), f"{name} changes pixels outside its region"


def test_pale_skin_recolours_the_face_much_lighter() -> None:
    dark = render_face(BASE.with_attributes(skin_tone=1.0))  # lightest non-pale tone
    pale = render_face(BASE.with_attributes(Pale_Skin=True, skin_tone=0.0))  # darkest pale
    cheek = (slice(36, 42), slice(18, 24))
    difference = pale[cheek].astype(float).mean(axis=(0, 1)) - dark[cheek].mean(axis=(0, 1))
    assert difference.min() > 15, difference  # lighter in every channel
    assert changed_mask(dark, pale)[20:60, 16:48].mean() > 0.3


def test_flips_work_from_sampled_faces_too() -> None:
    for seed in range(10):
        spec = sample_spec(seed)
        for name in ("Smiling", "Eyeglasses", "Beard", "Rosy_Cheeks", "Narrow_Eyes"):
            other = spec.with_attributes(**{name: not getattr(spec, name.lower())})
            assert changed_mask(render_face(spec), render_face(other)).sum() >= 8, (seed, name)


def test_with_attributes_rejects_impossible_faces() -> None:
    with pytest.raises(InvalidFaceSpec, match="Bangs"):
        BASE.with_attributes(Bald=True, Bangs=True)
    with pytest.raises(InvalidFaceSpec, match="Wearing_Hat"):
        BASE.with_attributes(Bald=True, Wearing_Hat=True)
    with pytest.raises(InvalidFaceSpec, match="exactly one"):
        BASE.with_attributes(Black_Hair=False)
    with pytest.raises(InvalidFaceSpec, match="unknown"):
        BASE.with_attributes(Young=True)
    with pytest.raises(InvalidFaceSpec, match="skin_tone"):
        BASE.with_attributes(skin_tone=1.5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        BASE.smiling = True  # type: ignore[misc]
    with pytest.raises(ValueError, match="seed"):
        sample_spec(-1)
    with pytest.raises(ValueError, match="size"):
        render_face(BASE, size=8)


def test_with_attributes_accepts_field_names_and_keeps_the_rest() -> None:
    spec = sample_spec(5)
    changed = spec.with_attributes(smiling=not spec.smiling, Gray_Hair=True)
    assert changed.smiling != spec.smiling
    assert changed.hair_colour() == "Gray_Hair"
    assert changed.skin_tone == spec.skin_tone and changed.roll == spec.roll


@pytest.mark.parametrize("size", [64, 128, 256])
def test_sizes_render_the_same_face(size: int) -> None:
    spec = sample_spec(42)
    image = render_face(spec, size)
    assert image.shape == (size, size, 3) and image.dtype == np.uint8
    # Area-reducing the larger render gives (nearly) the 64 px face: same layout at every size.
    small = np.asarray(Image.fromarray(image).reduce(size // 64), dtype=np.float64)
    assert np.abs(small - render_face(spec, 64)).mean() < 6.0


def test_dataset_items() -> None:
    data = SynthFaces(start_seed=HELDOUT_SEED_START, length=3)
    assert len(data) == 3
    item = data[1]
    assert item["seed"] == HELDOUT_SEED_START + 1
    image = item["image"]
    assert image.dtype == torch.float32 and image.shape == (3, 64, 64)
    assert -1.0 <= image.min() and image.max() <= 1.0
    expected_image, expected_labels = generate(HELDOUT_SEED_START + 1)
    assert torch.equal(
        ((image + 1.0) * 127.5).round().to(torch.uint8).permute(1, 2, 0),
        torch.from_numpy(expected_image),
    )
    assert item["attributes"].dtype == torch.int8
    assert torch.equal(item["attributes"], torch.from_numpy(expected_labels))
    assert data[-1]["seed"] == HELDOUT_SEED_START + 2
    with pytest.raises(IndexError):
        data[3]
    with pytest.raises(ValueError, match="TRAIN_SEED_END"):
        SynthFaces(start_seed=TRAIN_SEED_END - 5, length=10)


def test_image_folder_round_trips(tmp_path) -> None:
    csv_path = write_image_folder(tmp_path / "faces", start_seed=100, count=6, size=64)
    assert csv_path == tmp_path / "faces" / "attributes.csv"
    header = csv_path.read_text().splitlines()[0].split(",")
    assert header == ["image_id", *ATTRIBUTES]
    ids, labels = read_attributes_csv(csv_path)
    assert ids == [f"{seed:08d}.png" for seed in range(100, 106)]
    images, expected = generate_batch(range(100, 106))
    assert np.array_equal(labels, expected)
    for image_id, image in zip(ids, images, strict=True):
        assert np.array_equal(np.asarray(Image.open(tmp_path / "faces" / image_id)), image)
