"""Attribute editing in DiffAE's semantic space: named, pure functions over tensors.

The official recipe (DiffAE's ``manipulate.ipynb`` and its Replicate demo) edits one attribute::

    z_norm = classifier.normalize(z_sem)
    z_norm = z_norm + strength * sqrt(512) * w_i / ||w_i||       # w_i: the attribute's row
    z_sem' = classifier.denormalize(z_norm)

Here ``sqrt(512)`` is ``sqrt(D)`` for the model's z_sem width D (512 for every released
model), so strengths are in the official units and numbers carry over from the notebooks.
On top of it:

* several attributes combine additively: the step is ``sqrt(D) * sum_i strength_i * u_i``;
* locked attributes have their classifier rows projected out of the *total* step (an
  orthonormal basis of the locked rows by Gram-Schmidt/QR), so their logits do not move;
* a target probability for an attribute is reached in closed form, because a logit is linear
  in the strength along any direction in normalised space;
* custom attributes are logistic-regression directions fitted on a few examples.

Every function takes the classifier that defines the slider set; attribute names come from it
(``AttributeClassifier.attribute_names``), never from UI strings.

The step is applied as ``z_sem + step * z_std``, algebraically the recipe above, so that zero
strengths return z_sem bit-for-bit (a normalise/de-normalise round trip would not).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import torch

from .classifier import AttributeClassifier, ClassifierError
from .errors import EditError

__all__ = [
    "MIN_CUSTOM_EXAMPLES",
    "TARGET_LANDING",
    "attribute_directions",
    "corrected_targets",
    "edit_step",
    "edit_z_sem",
    "fit_custom_attribute",
    "lerp",
    "locked_basis",
    "merge_classifiers",
    "slerp",
    "solve_target_strength",
    "solve_target_strengths",
    "unit_direction",
]

#: Fewest positive (and fewest negative) examples :func:`fit_custom_attribute` accepts.
MIN_CUSTOM_EXAMPLES = 2

#: A target counts as reached when the probability measured on the rendered result is this
#: close to it; farther, the render takes one corrective step (:func:`corrected_targets`).
TARGET_LANDING = 0.1

# Targets are solved in logit space; a probability of exactly 0 or 1 is an infinite logit.
_MIN_TARGET = 1e-4
# A target direction whose effect on its own logit is below this (per unit strength, after
# locks are projected out) cannot reach the target: it is (nearly) inside the locked span.
_MIN_TARGET_GAIN = 1e-6
# L2 regularisation of custom attributes (scikit-learn's C, the inverse strength). With a few
# examples in 512 dimensions the classes are always separable; the penalty keeps the
# direction the max-margin-like one instead of an arbitrarily long vector.
_CUSTOM_C = 1.0


# --------------------------------------------------------------------------- directions


def unit_direction(classifier: AttributeClassifier, name: str) -> torch.Tensor:
    """The attribute's unit edit direction in normalised z_sem space: ``w_i / ||w_i||`` (the
    official recipe), or the artefact's own edit direction where it stores one.

    Returns:
        (D,) float32.

    Raises:
        ClassifierError: unknown attribute name.
        EditError: the attribute's row is all zeros (it has no direction).
    """
    rows = classifier.weight if classifier.directions is None else classifier.directions
    row = rows[classifier.index(name)].float()
    norm = float(row.norm())
    if norm == 0.0:
        raise EditError(f"attribute {name!r} has an all-zero classifier row, so no direction")
    return row / norm


def attribute_directions(classifier: AttributeClassifier, names: Iterable[str]) -> torch.Tensor:
    """Unit directions of ``names``, stacked: (K, D) float32 (K = 0 gives (0, D))."""
    rows = [unit_direction(classifier, name) for name in names]
    if not rows:
        return torch.zeros(0, classifier.z_sem_channels)
    return torch.stack(rows)


def locked_basis(classifier: AttributeClassifier, locks: Iterable[str]) -> torch.Tensor:
    """Orthonormal basis of the span of the locked attributes' classifier rows.

    Gram-Schmidt via a reduced QR decomposition (numerically the same basis, stabler); rows
    that are linear combinations of earlier ones add nothing.

    Returns:
        (L', D) float64 with orthonormal rows, L' <= number of distinct locks.
    """
    names = list(dict.fromkeys(locks))  # de-duplicated, order kept
    if not names:
        return torch.zeros(0, classifier.z_sem_channels, dtype=torch.float64)
    rows = torch.stack([classifier.weight[classifier.index(n)] for n in names]).double()
    q, r = torch.linalg.qr(rows.T, mode="reduced")  # rows.T = q @ r, q: (D, L)
    diagonal = r.diagonal().abs()
    # Drop directions whose residual after the earlier rows is negligible (dependent locks);
    # the rows are float32, so "negligible" is well above float32 rounding.
    keep = diagonal > 1e-5 * max(float(diagonal.max()), 1e-30)
    return q[:, keep].T.contiguous()


def _project_out(step: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """step (..., D) minus its component in span(basis rows); basis (L, D) orthonormal."""
    if basis.shape[0] == 0:
        return step
    return step - (step @ basis.T) @ basis


def _check_strengths(
    classifier: AttributeClassifier, strengths: Mapping[str, float], locks: Sequence[str]
) -> dict[str, float]:
    checked: dict[str, float] = {}
    for name, value in strengths.items():
        classifier.index(name)  # unknown names raise ClassifierError
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise EditError(f"strength of {name!r} must be a number, got {value!r}") from None
        if not math.isfinite(value):
            raise EditError(f"strength of {name!r} must be a finite number, got {value}")
        if value != 0.0 and name in locks:
            raise EditError(f"{name!r} is locked, so it cannot also be edited; unlock it first")
        checked[name] = value
    for name in locks:
        classifier.index(name)
    return checked


def edit_step(
    classifier: AttributeClassifier,
    strengths: Mapping[str, float],
    *,
    locks: Sequence[str] = (),
) -> torch.Tensor:
    """The total edit step in *normalised* z_sem space.

    ``sqrt(D) * sum_i strength_i * u_i``, minus its component along the locked rows.

    Returns:
        (D,) float64 (zeros when every strength is 0).

    Raises:
        ClassifierError: unknown attribute name (in strengths or locks).
        EditError: non-finite strength, or a locked attribute with a non-zero strength.
    """
    locks = tuple(locks)
    checked = _check_strengths(classifier, strengths, locks)
    width = classifier.z_sem_channels
    step = torch.zeros(width, dtype=torch.float64)
    for name, value in checked.items():
        if value != 0.0:
            step += value * math.sqrt(width) * unit_direction(classifier, name).double()
    return _project_out(step, locked_basis(classifier, locks))


def edit_z_sem(
    z_sem: torch.Tensor,
    classifier: AttributeClassifier,
    strengths: Mapping[str, float],
    *,
    locks: Sequence[str] = (),
) -> torch.Tensor:
    """Move z_sem along attribute directions (the official recipe, several at once).

    Args:
        z_sem: (B, D) or (D,) semantic codes, any float dtype/device.
        classifier: defines the directions and the normalisation (its z_mean/z_std).
        strengths: attribute name -> strength in the official units (typically -1..1; the
            notebooks use 0.3). Zero strengths are allowed and do nothing.
        locks: attribute names whose logits must not move; their classifier rows are
            projected out of the total step.

    Returns:
        Edited codes, same shape, dtype and device as ``z_sem``. With all strengths 0 (or
        none) the input values are returned unchanged, bit for bit (as a new tensor).

    Raises:
        ClassifierError: unknown attribute name.
        EditError: non-finite strength or a locked attribute with a non-zero strength.
    """
    _check_z(z_sem, classifier)
    step = edit_step(classifier, strengths, locks=locks)
    if not bool(step.any()):
        return z_sem.clone()
    # normalise, add, de-normalise == add step * z_std in raw space.
    raw_step = (step * classifier.z_std.double()).to(z_sem.device)
    return (z_sem.double() + raw_step).to(z_sem.dtype)


def _check_z(z_sem: torch.Tensor, classifier: AttributeClassifier) -> None:
    width = classifier.z_sem_channels
    if z_sem.dim() not in (1, 2) or z_sem.shape[-1] != width:
        raise EditError(
            f"z_sem must be (B, {width}) or ({width},) for this classifier, got {tuple(z_sem.shape)}"
        )


# --------------------------------------------------------------------------- targets


def solve_target_strengths(
    z_sem: torch.Tensor,
    classifier: AttributeClassifier,
    targets: Mapping[str, float],
    *,
    strengths: Mapping[str, float] | None = None,
    locks: Sequence[str] = (),
) -> dict[str, float]:
    """Strengths that bring each target attribute's probability to its target value.

    The other ``strengths`` are applied as well and held fixed; targets are solved jointly,
    since each direction also moves the other targets' logits. In normalised space the logit
    after the edit is ``l_k + sqrt(D) * sum_j s_j w_k . P u_j`` (P removes the locked span),
    which is linear in the strengths, so this is one small linear solve.

    Args:
        z_sem: (1, D) or (D,): one code.
        classifier: the slider set.
        targets: attribute name -> probability in (0, 1).
        strengths: other attributes' strengths (a strength for a target attribute is ignored:
            the target decides it).
        locks: locked attributes (see :func:`edit_z_sem`).

    Returns:
        Target attribute name -> strength, in the order of ``targets``.

    Raises:
        ClassifierError: unknown attribute name.
        EditError: a probability outside (0, 1), a locked target, more than one code, or a
            target that the directions cannot reach (locked away or parallel to another).
    """
    _check_z(z_sem, classifier)
    if z_sem.dim() == 2 and z_sem.shape[0] != 1:
        raise EditError(f"targets are solved for one code at a time, got {z_sem.shape[0]}")
    if not targets:
        return {}
    locks = tuple(locks)
    names = list(targets)
    wanted = []
    for name in names:
        classifier.index(name)
        try:
            probability = float(targets[name])
        except (TypeError, ValueError):
            raise EditError(
                f"target of {name!r} must be a probability, got {targets[name]!r}"
            ) from None
        if not _MIN_TARGET <= probability <= 1 - _MIN_TARGET:
            raise EditError(
                f"target probability of {name!r} must be between {_MIN_TARGET} and "
                f"{1 - _MIN_TARGET}, got {probability}"
            )
        if name in locks:
            raise EditError(f"{name!r} is locked, so it cannot also have a target; unlock it")
        wanted.append(math.log(probability / (1 - probability)))
    fixed = {k: v for k, v in (strengths or {}).items() if k not in targets}

    width = classifier.z_sem_channels
    basis = locked_basis(classifier, locks)
    weight = classifier.weight.double()
    rows = torch.stack([weight[classifier.index(n)] for n in names])  # (K, D)
    normalised = classifier.normalize(z_sem.reshape(1, -1).double().cpu())[0]
    bias = torch.stack([classifier.bias.double()[classifier.index(n)] for n in names])
    current = rows @ (normalised + edit_step(classifier, fixed, locks=locks)) + bias  # (K,)
    directions = _project_out(attribute_directions(classifier, names).double(), basis)
    gain = math.sqrt(width) * rows @ directions.T  # gain[k, j]: logit k per unit strength j
    for k, name in enumerate(names):
        if abs(float(gain[k, k])) < _MIN_TARGET_GAIN:
            raise EditError(
                f"cannot reach the target for {name!r}: with the locks, its direction no longer "
                "changes it; unlock the attributes it depends on"
            )
    residual = torch.tensor(wanted, dtype=torch.float64) - current
    solution = torch.linalg.lstsq(gain, residual[:, None]).solution[:, 0]
    if not torch.allclose(gain @ solution, residual, atol=1e-6, rtol=1e-6):
        raise EditError(
            f"cannot reach targets for {', '.join(names)} together: their directions are "
            "(nearly) parallel; set a target for one of them only"
        )
    return {name: float(solution[k]) for k, name in enumerate(names)}


def solve_target_strength(
    z_sem: torch.Tensor,
    classifier: AttributeClassifier,
    name: str,
    target_probability: float,
    *,
    strengths: Mapping[str, float] | None = None,
    locks: Sequence[str] = (),
) -> float:
    """The strength along ``name``'s direction that makes its probability ``target_probability``.

    One-target form of :func:`solve_target_strengths` (same arguments and errors).
    """
    solved = solve_target_strengths(
        z_sem, classifier, {name: target_probability}, strengths=strengths, locks=locks
    )
    return solved[name]


def corrected_targets(
    targets: Mapping[str, float],
    measured: Mapping[str, float],
    start: Mapping[str, float],
    asked: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """Targets for one corrective step after a render missed them (a secant step).

    The solver places the *code* at each target, but the decoder and the encoder together do
    not carry every direction through: the re-encoded render moves only part of the way (or
    past it). Two points are known in logit space: the unedited face (code at ``start``,
    which is also what its faithful reconstruction measures) and the first render (code at
    ``asked``, measured at ``measured``). Their slope is the gain of the render along this
    edit; asking for ``start + (target - start) / gain`` lands on the target if the gain holds.
    The gain is clamped to [1/3, 3] so one step at most triples (or thirds) the move, never an
    unbounded jump where a direction does not render at all.

    Args:
        targets: attribute -> wanted probability.
        measured: attribute -> probability measured on the first render.
        start: attribute -> probability of the unedited code.
        asked: attribute -> probability of the first edited code (default: ``targets``).

    Returns:
        Attribute -> probability to ask for instead, kept inside the solver's range.
    """
    out = {}
    for name, target in targets.items():
        wanted = _logit(float(target))
        base = _logit(float(start.get(name, target)))
        first = _logit(float((asked or targets).get(name, target)))
        got = _logit(float(measured.get(name, target)))
        moved_code, moved_render = first - base, got - base
        if abs(moved_code) < 1e-6:
            out[name] = float(target)
            continue
        gain = min(max(moved_render / moved_code, 1 / 3), 3.0)
        out[name] = _sigmoid(base + (wanted - base) / gain)
    return out


def _logit(probability: float) -> float:
    p = min(max(probability, _MIN_TARGET), 1 - _MIN_TARGET)
    return math.log(p / (1 - p))


def _sigmoid(logit: float) -> float:
    p = 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, logit))))
    return min(max(p, _MIN_TARGET), 1 - _MIN_TARGET)


# --------------------------------------------------------------------------- interpolation


def _endpoint(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor | None:
    """Checks the shapes; a copy of ``a`` at t=0 or ``b`` at t=1 (exact), else None."""
    if a.shape != b.shape:
        raise EditError(f"cannot interpolate shapes {tuple(a.shape)} and {tuple(b.shape)}")
    if t == 0:
        return a.clone()
    if t == 1:
        return b.clone()
    return None


def lerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Linear interpolation ``(1 - t) a + t b``; exactly ``a`` at t=0 and ``b`` at t=1."""
    endpoint = _endpoint(a, b, t)
    return endpoint if endpoint is not None else torch.lerp(a, b, float(t))


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation, per batch item, as DiffAE's interpolation notebook does for x_T.

    The angle is taken between each item's flattened vectors; nearly parallel vectors fall
    back to :func:`lerp`. Exactly ``a`` at t=0 and ``b`` at t=1.

    Args:
        a, b: (B, ...) tensors of equal shape (e.g. x_T (B, 3, S, S)).
        t: fraction in [0, 1].
    """
    endpoint = _endpoint(a, b, t)
    if endpoint is not None:
        return endpoint
    flat_a = a.reshape(a.shape[0], -1).double()
    flat_b = b.reshape(b.shape[0], -1).double()
    cos = torch.nn.functional.cosine_similarity(flat_a, flat_b, dim=1).clamp(-1.0, 1.0)
    theta = torch.arccos(cos)[:, None]
    sin = torch.sin(theta)
    safe = sin.abs() > 1e-6
    spherical = (torch.sin((1 - t) * theta) * flat_a + torch.sin(t * theta) * flat_b) / torch.where(
        safe, sin, torch.ones_like(sin)
    )
    linear = torch.lerp(flat_a, flat_b, float(t))
    mixed = torch.where(safe, spherical, linear)
    return mixed.reshape(a.shape).to(a.dtype)


# --------------------------------------------------------------------------- custom attributes


def fit_custom_attribute(
    z_pos: torch.Tensor,
    z_neg: torch.Tensor,
    name: str,
    *,
    z_mean: torch.Tensor,
    z_std: torch.Tensor,
    regularization: float = _CUSTOM_C,
) -> AttributeClassifier:
    """A one-attribute linear classifier fitted on examples with and without a property.

    Logistic regression (scikit-learn, L2, balanced class weights) on z_sem normalised with
    ``z_mean``/``z_std``: pass the slider set's statistics, so the new row's direction is a
    direction of the same space as the other sliders (see :func:`merge_classifiers`).

    Args:
        z_pos: (P, D) codes of examples that have the property, P >= MIN_CUSTOM_EXAMPLES.
        z_neg: (N, D) codes of examples that do not, N >= MIN_CUSTOM_EXAMPLES.
        name: the new attribute's name (its slider label); letters, digits, ``_``, ``-``,
            spaces.
        z_mean, z_std: (D,) normalisation statistics.
        regularization: scikit-learn's ``C`` (inverse L2 strength).

    Returns:
        An AttributeClassifier with one row; metrics hold the training accuracy and counts.

    Raises:
        EditError: too few examples, bad shapes, or a bad name.
    """
    # Heavy imports, needed only here.
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    _check_attribute_name(name)
    z_pos = torch.as_tensor(z_pos).detach().double().cpu()
    z_neg = torch.as_tensor(z_neg).detach().double().cpu()
    width = z_mean.numel()
    for label, z in (("positive", z_pos), ("negative", z_neg)):
        if z.dim() != 2 or z.shape[1] != width:
            raise EditError(f"{label} codes must be (N, {width}), got {tuple(z.shape)}")
        if z.shape[0] < MIN_CUSTOM_EXAMPLES:
            raise EditError(
                f"a custom attribute needs at least {MIN_CUSTOM_EXAMPLES} {label} examples, got "
                f"{z.shape[0]}"
            )
    mean, std = z_mean.reshape(-1).double().cpu(), z_std.reshape(-1).double().cpu()
    features = (torch.cat([z_pos, z_neg]) - mean) / std
    labels = [1] * z_pos.shape[0] + [0] * z_neg.shape[0]
    model = LogisticRegression(C=regularization, class_weight="balanced", max_iter=5000)
    # A few dozen examples: one BLAS/OpenMP thread is fastest, and on a busy machine extra
    # threads spin-wait for seconds.
    with threadpool_limits(limits=1):
        model.fit(features.numpy(), labels)
    accuracy = float(model.score(features.numpy(), labels))
    return AttributeClassifier(
        attribute_names=(name,),
        weight=torch.from_numpy(model.coef_).float().reshape(1, width),
        bias=torch.from_numpy(model.intercept_).float().reshape(1),
        z_mean=z_mean.reshape(-1).float().cpu().clone(),
        z_std=z_std.reshape(-1).float().cpu().clone(),
        metrics={
            name: {
                "train_accuracy": accuracy,
                "num_positive": float(z_pos.shape[0]),
                "num_negative": float(z_neg.shape[0]),
            }
        },
        source=f"custom attribute fitted on {z_pos.shape[0]} + {z_neg.shape[0]} examples",
    )


def _check_attribute_name(name: str) -> None:
    allowed = set("_- ")
    if (
        not isinstance(name, str)
        or not name.strip()
        or len(name) > 64
        or not all(ch.isalnum() or ch in allowed for ch in name)
    ):
        raise EditError(
            f"attribute name {name!r} is not usable; use 1-64 letters, digits, '_', '-' or spaces"
        )


def merge_classifiers(
    base: AttributeClassifier, *others: AttributeClassifier
) -> AttributeClassifier:
    """One slider set: ``base``'s rows followed by each of ``others``' rows.

    Rows of a classifier with other normalisation statistics are re-expressed exactly in
    ``base``'s normalised space (same logits for every z_sem): with ``z = n s_b + m_b``,
    ``w . (z - m_c) / s_c + b == (w s_b / s_c) . n + w . (m_b - m_c) / s_c + b``.
    Their edit direction is then the re-expressed row, or their own edit direction
    re-expressed as a step (divided by the same ratio).

    Raises:
        ClassifierError: names collide or the widths differ.
    """
    names = list(base.attribute_names)
    weights, biases = [base.weight.float()], [base.bias.float()]
    # Edit directions are steps, not covectors: re-expressed with the inverse ratio.
    directions = [base.weight.float() if base.directions is None else base.directions.float()]
    metrics = dict(base.metrics)
    sources = [base.source] if base.source else []
    for other in others:
        if other.z_sem_channels != base.z_sem_channels:
            raise ClassifierError(
                f"cannot merge a classifier for {other.z_sem_channels}-d z_sem into one for "
                f"{base.z_sem_channels}-d z_sem (a different model?)"
            )
        clash = sorted(set(names) & set(other.attribute_names))
        if clash:
            raise ClassifierError(
                f"attribute names already in use: {', '.join(clash)}; rename the custom attribute"
            )
        weight, bias = other.weight.double(), other.bias.double()
        direction = None if other.directions is None else other.directions.double()
        same_stats = torch.equal(other.z_mean, base.z_mean) and torch.equal(other.z_std, base.z_std)
        if not same_stats:
            ratio = base.z_std.double() / other.z_std.double()
            shift = (base.z_mean.double() - other.z_mean.double()) / other.z_std.double()
            bias = bias + weight @ shift
            weight = weight * ratio
            direction = None if direction is None else direction / ratio
        names.extend(other.attribute_names)
        weights.append(weight.float())
        directions.append(weight.float() if direction is None else direction.float())
        biases.append(bias.float())
        metrics.update(other.metrics)
        if other.source:
            sources.append(other.source)
    return AttributeClassifier(
        attribute_names=tuple(names),
        weight=torch.cat(weights),
        bias=torch.cat(biases),
        z_mean=base.z_mean.float(),
        z_std=base.z_std.float(),
        metrics=metrics,
        source="; ".join(sources),
        directions=(
            None
            if base.directions is None and all(o.directions is None for o in others)
            else torch.cat(directions)
        ),
    )
