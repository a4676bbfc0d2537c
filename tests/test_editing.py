"""Tests for diffae_app.editing: pure functions on hand-made classifiers, no model."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from diffae_app.classifier import AttributeClassifier, ClassifierError
from diffae_app.editing import (
    attribute_directions,
    edit_step,
    edit_z_sem,
    fit_custom_attribute,
    lerp,
    locked_basis,
    merge_classifiers,
    slerp,
    solve_target_strength,
    solve_target_strengths,
    unit_direction,
)
from diffae_app.errors import EditError, StudioError

pytestmark = pytest.mark.usefixtures("single_thread")

WIDTH = 32
NAMES = ("Smiling", "Male", "Young", "Eyeglasses")


def _classifier(seed: int = 0, *, correlated: bool = True) -> AttributeClassifier:
    """Four rows in 32-d; with `correlated`, Male and Young share much of Smiling's direction
    (as real attribute classifiers do), so a lock has something to remove."""
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(len(NAMES), WIDTH, generator=generator)
    if correlated:
        weight[1] += 1.5 * weight[0]
        weight[2] -= 1.0 * weight[0]
    return AttributeClassifier(
        attribute_names=NAMES,
        weight=weight,
        bias=torch.randn(len(NAMES), generator=generator),
        z_mean=torch.randn(WIDTH, generator=generator),
        z_std=torch.rand(WIDTH, generator=generator) + 0.5,
    )


def _freckles(*, with_direction: bool = False) -> AttributeClassifier:
    """A one-row classifier with its own normalisation statistics (to merge into _classifier)."""
    generator = torch.Generator().manual_seed(9)
    return AttributeClassifier(
        ("Freckles",),
        torch.randn(1, WIDTH, generator=generator),
        torch.randn(1, generator=generator),
        torch.randn(WIDTH, generator=generator),
        torch.rand(WIDTH, generator=generator) + 0.5,
        directions=torch.randn(1, WIDTH, generator=generator) if with_direction else None,
    )


def _z(n: int = 1, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, WIDTH, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- directions


def test_unit_direction_is_the_normalised_row() -> None:
    classifier = _classifier()
    u = unit_direction(classifier, "Male")
    assert u.shape == (WIDTH,)
    assert float(u.norm()) == pytest.approx(1.0, abs=1e-6)
    assert torch.allclose(u, classifier.weight[1] / classifier.weight[1].norm())
    assert attribute_directions(classifier, ["Smiling", "Young"]).shape == (2, WIDTH)
    assert attribute_directions(classifier, []).shape == (0, WIDTH)


def test_stored_edit_directions_replace_the_rows_for_editing_only(tmp_path: Path) -> None:
    plain = _classifier()
    directions = torch.randn(len(NAMES), WIDTH, generator=torch.Generator().manual_seed(5))
    steered = dataclasses.replace(plain, directions=directions)
    u = unit_direction(steered, "Young")
    assert torch.allclose(u, directions[2] / directions[2].norm())
    z = _z(3)
    edited = edit_z_sem(z, steered, {"Young": 0.4})
    expected = steered.denormalize(steered.normalize(z) + 0.4 * math.sqrt(WIDTH) * u)
    assert torch.allclose(edited, expected, atol=1e-5)
    assert torch.equal(steered.logits(z), plain.logits(z))  # reading is unchanged
    # Locks still hold the locked logit: they project out the classifier row, not the direction.
    locked = edit_z_sem(z, steered, {"Young": 0.4}, locks=["Smiling"])
    assert torch.allclose(steered.logits(locked)[:, 0], steered.logits(z)[:, 0], atol=1e-4)
    loaded = AttributeClassifier.load(steered.save(tmp_path / "c.safetensors"))
    assert torch.equal(loaded.directions, directions)
    assert AttributeClassifier.load(plain.save(tmp_path / "p.safetensors")).directions is None
    with pytest.raises(ClassifierError, match="edit directions"):
        dataclasses.replace(plain, directions=directions[:2])


def test_merging_keeps_each_part_s_edit_step_in_raw_z_sem() -> None:
    base = _classifier()
    other = _freckles(with_direction=True)
    merged = merge_classifiers(base, other)
    assert merged.directions is not None and merged.directions.shape == (5, WIDTH)
    assert torch.allclose(unit_direction(merged, "Male"), unit_direction(base, "Male"))
    # The same raw z_sem displacement direction, whichever normalisation expresses it.
    raw_own = unit_direction(other, "Freckles") * other.z_std
    raw_merged = unit_direction(merged, "Freckles") * merged.z_std
    assert torch.allclose(raw_own / raw_own.norm(), raw_merged / raw_merged.norm(), atol=1e-5)
    assert merge_classifiers(base, dataclasses.replace(other, directions=None)).directions is None


def test_unknown_attribute_names_the_known_ones() -> None:
    with pytest.raises(ClassifierError, match=r"unknown attribute 'Happy'; .*Smiling, Male"):
        unit_direction(_classifier(), "Happy")
    with pytest.raises(ClassifierError, match="unknown attribute 'Bald'"):
        edit_z_sem(_z(), _classifier(), {"Smiling": 0.1}, locks=["Bald"])


def test_zero_strengths_return_z_sem_bit_for_bit() -> None:
    classifier, z = _classifier(), _z(3)
    for strengths in ({}, {"Smiling": 0.0, "Young": 0.0}):
        edited = edit_z_sem(z, classifier, strengths, locks=["Male"])
        assert torch.equal(edited, z) and edited is not z


def test_single_edit_is_the_official_recipe() -> None:
    classifier, z = _classifier(), _z(2)
    row = classifier.weight[0]
    # DiffAE manipulate.ipynb: normalize, + s * sqrt(512) * F.normalize(w), denormalize.
    expected = classifier.denormalize(
        classifier.normalize(z) + 0.3 * math.sqrt(WIDTH) * row / row.norm()
    )
    edited = edit_z_sem(z, classifier, {"Smiling": 0.3})
    assert torch.allclose(edited, expected, atol=1e-5)
    assert edited.dtype == z.dtype and edited.shape == z.shape
    # One unit of strength is sqrt(D) in normalised space: the official scale.
    step = classifier.normalize(edited) - classifier.normalize(z)
    assert float(step[0].norm()) == pytest.approx(0.3 * math.sqrt(WIDTH), rel=1e-4)


def test_several_attributes_add_up() -> None:
    classifier, z = _classifier(), _z(2)
    strengths = {"Smiling": 0.3, "Eyeglasses": -0.2, "Young": 0.5}
    together = edit_z_sem(z, classifier, strengths) - z
    alone = sum(edit_z_sem(z, classifier, {k: v}) - z for k, v in strengths.items())
    assert torch.allclose(together, alone, atol=1e-5)


def test_locked_attribute_logit_stays_put() -> None:
    classifier, z = _classifier(), _z(4)
    before = classifier.logits(z)
    free = classifier.logits(edit_z_sem(z, classifier, {"Smiling": 0.5})) - before
    locked = (
        classifier.logits(edit_z_sem(z, classifier, {"Smiling": 0.5}, locks=["Male", "Young"]))
        - before
    )
    for column in (1, 2):  # Male, Young
        assert free[:, column].abs().min() > 1.0  # correlated: they move without the lock
        assert (locked[:, column].abs() < 0.05 * free[:, column].abs()).all()
        assert locked[:, column].abs().max() < 1e-4
    assert (locked[:, 0] > 0.2).all()  # Smiling still moves up


def test_locked_basis_is_orthonormal_and_skips_dependent_rows() -> None:
    base = _classifier()
    weight = base.weight.clone()
    weight[3] = 2 * weight[1] - weight[2]  # Eyeglasses is in the span of Male and Young
    classifier = AttributeClassifier(NAMES, weight, base.bias, base.z_mean, base.z_std)
    basis = locked_basis(classifier, ["Male", "Young", "Eyeglasses", "Male"])
    assert basis.shape == (2, WIDTH)
    assert torch.allclose(basis @ basis.T, torch.eye(2, dtype=basis.dtype), atol=1e-10)
    assert locked_basis(classifier, []).shape == (0, WIDTH)


def test_locked_attribute_cannot_also_be_edited() -> None:
    classifier = _classifier()
    with pytest.raises(EditError, match="'Male' is locked, so it cannot also be edited"):
        edit_step(classifier, {"Male": 0.2}, locks=["Male"])
    edit_step(classifier, {"Male": 0.0}, locks=["Male"])  # a zero slider is fine
    with pytest.raises(EditError, match="must be a finite number"):
        edit_step(classifier, {"Smiling": float("nan")})
    with pytest.raises(EditError, match="must be a number"):
        edit_step(classifier, {"Smiling": "lots"})
    assert issubclass(EditError, StudioError) and issubclass(StudioError, ValueError)


# --------------------------------------------------------------------------- targets


@pytest.mark.parametrize("target", [0.05, 0.5, 0.9, 0.99])
def test_target_probability_is_reached(target: float) -> None:
    classifier, z = _classifier(), _z(1, seed=5)
    strength = solve_target_strength(z, classifier, "Smiling", target)
    edited = edit_z_sem(z, classifier, {"Smiling": strength})
    assert float(classifier.probabilities(edited)[0, 0]) == pytest.approx(target, abs=1e-4)


def test_target_with_other_strengths_and_locks() -> None:
    classifier, z = _classifier(), _z(1, seed=6)
    others, locks = {"Eyeglasses": 0.4}, ["Male"]
    strength = solve_target_strength(z, classifier, "Smiling", 0.8, strengths=others, locks=locks)
    edited = edit_z_sem(z, classifier, {**others, "Smiling": strength}, locks=locks)
    probabilities = classifier.probabilities(edited)[0]
    assert float(probabilities[0]) == pytest.approx(0.8, abs=1e-4)
    assert float(classifier.logits(edited)[0, 1]) == pytest.approx(
        float(classifier.logits(z)[0, 1]), abs=1e-4
    )


def test_several_targets_are_solved_together() -> None:
    classifier, z = _classifier(), _z(1, seed=7)
    targets = {"Smiling": 0.9, "Male": 0.2, "Eyeglasses": 0.7}
    solved = solve_target_strengths(z, classifier, targets)
    assert list(solved) == list(targets)
    probabilities = classifier.probabilities(edit_z_sem(z, classifier, solved))[0]
    for name, target in targets.items():
        assert float(probabilities[NAMES.index(name)]) == pytest.approx(target, abs=1e-4)


def test_target_errors() -> None:
    classifier, z = _classifier(), _z(1)
    with pytest.raises(EditError, match="must be between"):
        solve_target_strength(z, classifier, "Smiling", 1.0)
    with pytest.raises(EditError, match="'Smiling' is locked, so it cannot also have a target"):
        solve_target_strength(z, classifier, "Smiling", 0.5, locks=["Smiling"])
    with pytest.raises(EditError, match="one code at a time"):
        solve_target_strength(_z(2), classifier, "Smiling", 0.5)
    same = AttributeClassifier(
        ("A", "B"),
        torch.stack([classifier.weight[0], 2 * classifier.weight[0]]),
        torch.zeros(2),
        classifier.z_mean,
        classifier.z_std,
    )
    with pytest.raises(EditError, match="cannot reach the target for 'A'"):
        solve_target_strength(z, same, "A", 0.7, locks=["B"])
    with pytest.raises(EditError, match="together"):
        solve_target_strengths(z, same, {"A": 0.7, "B": 0.2})


# --------------------------------------------------------------------------- interpolation


def test_interpolation_endpoints_are_exact() -> None:
    a, b = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    for function in (lerp, slerp):
        assert torch.equal(function(a, b, 0.0), a)
        assert torch.equal(function(a, b, 1), b)
    middle = slerp(a, b, 0.5)
    # Spherical: for two vectors of equal norm the midpoint keeps that norm.
    unit_a = a / a.flatten(1).norm(dim=1)[:, None, None, None]
    unit_b = b / b.flatten(1).norm(dim=1)[:, None, None, None]
    assert torch.allclose(slerp(unit_a, unit_b, 0.3).flatten(1).norm(dim=1), torch.ones(2))
    assert middle.shape == a.shape
    assert torch.allclose(slerp(a, 2 * a, 0.5), 1.5 * a, atol=1e-5)  # parallel: linear
    with pytest.raises(EditError, match="cannot interpolate"):
        lerp(a, b[:1], 0.5)


# --------------------------------------------------------------------------- custom attributes


def test_custom_attribute_separates_held_out_examples() -> None:
    generator = torch.Generator().manual_seed(3)
    direction = torch.randn(WIDTH, generator=generator)
    direction /= direction.norm()
    z_mean, z_std = torch.randn(WIDTH, generator=generator), torch.rand(WIDTH) + 0.5

    def examples(n: int, sign: float) -> torch.Tensor:
        noise = torch.randn(n, WIDTH, generator=generator)
        return (noise + sign * 3.0 * direction) * z_std + z_mean

    classifier = fit_custom_attribute(
        examples(6, 1.0), examples(6, -1.0), "Freckles", z_mean=z_mean, z_std=z_std
    )
    assert classifier.attribute_names == ("Freckles",)
    assert classifier.metrics["Freckles"]["train_accuracy"] == 1.0
    positives = classifier.probabilities(examples(40, 1.0))[:, 0]
    negatives = classifier.probabilities(examples(40, -1.0))[:, 0]
    assert (positives > 0.5).float().mean() >= 0.9 and (negatives < 0.5).float().mean() >= 0.9
    # Its direction points along the planted one.
    assert float(unit_direction(classifier, "Freckles") @ direction) > 0.6


def test_custom_attribute_errors() -> None:
    z_mean, z_std = torch.zeros(WIDTH), torch.ones(WIDTH)
    with pytest.raises(EditError, match="at least 2 negative examples"):
        fit_custom_attribute(_z(3), _z(1), "X", z_mean=z_mean, z_std=z_std)
    with pytest.raises(EditError, match=r"must be \(N, 32\)"):
        fit_custom_attribute(_z(3), torch.zeros(3, 5), "X", z_mean=z_mean, z_std=z_std)
    with pytest.raises(EditError, match="not usable"):
        fit_custom_attribute(_z(3), _z(3, 2), "a/b", z_mean=z_mean, z_std=z_std)


def test_merged_rows_keep_their_logits_under_other_statistics() -> None:
    base = _classifier()
    other = _freckles()
    merged = merge_classifiers(base, other)
    assert merged.attribute_names == (*NAMES, "Freckles")
    z = _z(5)
    assert torch.allclose(merged.logits(z)[:, :4], base.logits(z), atol=1e-5)
    assert torch.allclose(merged.logits(z)[:, 4:], other.logits(z), atol=1e-4)
    assert torch.equal(merged.z_mean, base.z_mean)
    with pytest.raises(ClassifierError, match="already in use: Freckles"):
        merge_classifiers(merged, other)
    small = AttributeClassifier(
        ("Y",), torch.ones(1, 4), torch.zeros(1), torch.zeros(4), torch.ones(4)
    )
    with pytest.raises(ClassifierError, match="4-d z_sem"):
        merge_classifiers(base, small)


def test_corrected_targets_take_a_secant_step() -> None:
    from diffae_app.editing import corrected_targets

    def logit(p: float) -> float:
        return math.log(p / (1 - p))

    # The render carried half of the code's move: the next ask doubles the move.
    start, target = 0.2, 0.8
    asked = target
    got = 1 / (1 + math.exp(-(logit(start) + 0.5 * (logit(asked) - logit(start)))))
    ask = corrected_targets({"A": target}, {"A": got}, {"A": start}, {"A": asked})["A"]
    assert logit(ask) - logit(start) == pytest.approx(2 * (logit(target) - logit(start)))
    # A direction that does not render at all: at most three times the move, never a jump.
    ask = corrected_targets({"A": target}, {"A": start}, {"A": start}, {"A": asked})["A"]
    assert logit(ask) - logit(start) == pytest.approx(3 * (logit(target) - logit(start)))
    # Already there: the same target again.
    assert corrected_targets({"A": 0.7}, {"A": 0.7}, {"A": 0.7})["A"] == pytest.approx(0.7)
