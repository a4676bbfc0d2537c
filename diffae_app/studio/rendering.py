"""Rendering an edit of a session: solve the strengths, render, measure, correct, paste back.

Renders are always done one image at a time. Convolutions are not batch-size invariant on
every backend (a face rendered in a batch of 4 differs from the same face alone in the 5th
decimal on CPU), and one at a time makes recipe replays, interpolation endpoints and "send to
Edit" samples reproduce their single renders exactly.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image

from ..classifier import AttributeClassifier
from ..editing import TARGET_LANDING, corrected_targets, edit_z_sem, solve_target_strengths
from ..errors import NoAttributeClassifier, StudioError
from ..imaging import image_to_tensor, tensor_to_image
from ..paste import check_paste_mode, compose
from ..progress import CancelCheck, PhaseProgress, PreviewCallback, step_callback
from ..session import EditResult, ProgressCallback, Session
from .arguments import check_seed, steps_or_default
from .recipes import build_recipe
from .sessions import check_session

if TYPE_CHECKING:
    from .facade import Studio

__all__ = [
    "Attempt",
    "EditRequest",
    "ReferenceRenders",
    "attributes",
    "check_request",
    "correct_towards_targets",
    "measure",
    "probabilities",
    "render",
    "render_attempt",
    "solve_strengths",
    "to_image",
]


@dataclass(frozen=True)
class EditRequest:
    """The checked arguments of one :meth:`Studio.render` call."""

    session: Session
    sliders: AttributeClassifier | None  # the model's classifier plus the custom attributes
    strengths: dict[str, float]
    targets: dict[str, float]
    locks: tuple[str, ...]
    T_render: int
    seed: int | None
    x_T: torch.Tensor  # where the render starts: the session's x_T, or noise drawn from `seed`
    paste: str
    measure: bool
    custom_attributes: tuple[AttributeClassifier, ...]


@dataclass(frozen=True)
class Attempt:
    """One render of an edit: the strengths applied, the edited code, the result, and what
    the result shows (classifier probabilities of the crop encoded again; empty unmeasured)."""

    applied: dict[str, float]
    z_edit: torch.Tensor
    images: torch.Tensor  # (1, 3, S, S) in [0, 1]
    crop: Image.Image
    measured: dict[str, float]


class ReferenceRenders:
    """Unedited renders per session and T_render: "change" paste-back subtracts one from every
    edit. Weak keys: a reconstruction lives exactly as long as its session (which lives in its
    user's EncodingCache), so the shared Studio never keeps a user's data. Thread-safe."""

    def __init__(self) -> None:
        self._renders: weakref.WeakKeyDictionary[Session, dict[int, torch.Tensor]] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    def get(self, session: Session, T_render: int) -> torch.Tensor | None:
        with self._lock:
            return self._renders.get(session, {}).get(T_render)

    def remember(self, session: Session, T_render: int, images: torch.Tensor) -> None:
        with self._lock:
            self._renders.setdefault(session, {})[T_render] = images


def render(
    studio: Studio,
    request: EditRequest,
    *,
    feather: float,
    progress: ProgressCallback | None,
    preview: PreviewCallback | None,
    cancel: CancelCheck | None,
) -> EditResult:
    """See :meth:`Studio.render`; ``request`` from :func:`check_request`."""
    session, T_render = request.session, request.T_render
    applied, z_edit = solve_strengths(request, request.targets)
    # The unedited render from the session's x_T is the edit itself when nothing moves, and
    # what "change" paste-back subtracts (also for a variation seed, so that the variation
    # shows as part of the change).
    unedited = request.seed is None and torch.equal(z_edit, session.z_sem)
    reference = studio.references.get(session, T_render)
    need_reference = reference is None and (unedited or request.paste == "change")
    # Target mode may render twice (one corrective step); the bar spans every render.
    edit_renders = 0 if unedited else (2 if request.targets and request.measure else 1)
    steps = PhaseProgress(progress, T_render * max(1, edit_renders + int(need_reference)))
    if need_reference:
        # Unedited, it is the render itself (streamed); otherwise the reconstruction
        # "change" needs, made before the edit (cancellable, not previewed).
        message = "rendering" if unedited else "reconstructing (once per face)"
        callback = step_callback(
            T_render,
            on_step=steps.ddim(message),
            preview=preview if unedited else None,
            cancel=cancel,
        )
        reference = unedited_render(studio, session, T_render, callback)
    draw = functools.partial(
        render_attempt, studio, request, reference, steps=steps, preview=preview, cancel=cancel
    )
    attempt, corrected = correct_towards_targets(request, draw(applied, z_edit), draw)
    steps.finish("rendered")
    return _edit_result(studio, request, attempt, reference, corrected, feather)


def check_request(
    studio: Studio,
    session: Session,
    strengths: Mapping[str, float] | None,
    *,
    locks: Sequence[str],
    targets: Mapping[str, float] | None,
    T_render: int | None,
    seed: int | None,
    custom_attributes: Sequence[AttributeClassifier],
    paste: str,
    measure: bool,
) -> EditRequest:
    """The render's arguments checked (one-line errors) and the start noise drawn."""
    check_session(studio, session)
    T_render = steps_or_default(T_render, "T_render")
    check_seed(seed, optional=True)
    try:
        paste = check_paste_mode(paste)
    except ValueError as error:
        raise StudioError(str(error)) from None
    sliders = studio.slider_set(custom_attributes)
    strengths = dict(strengths or {})
    targets = dict(targets or {})
    locks = tuple(dict.fromkeys(locks))
    if sliders is None and (any(strengths.values()) or targets or locks):
        raise NoAttributeClassifier(
            "this model has no attribute classifier, so attributes cannot be edited; add "
            "a custom attribute or load a model with classifiers/"
        )
    x_T = session.x_T
    if seed is not None:
        x_T = torch.randn(session.x_T.shape, generator=torch.Generator().manual_seed(seed))
    return EditRequest(
        session=session,
        sliders=sliders,
        strengths=strengths,
        targets=targets,
        locks=locks,
        T_render=T_render,
        seed=seed,
        x_T=x_T,
        paste=paste,
        measure=measure,
        custom_attributes=tuple(custom_attributes),
    )


def solve_strengths(
    request: EditRequest, wanted: Mapping[str, float]
) -> tuple[dict[str, float], torch.Tensor]:
    """(applied strengths, edited z_sem) for these target probabilities (the request's own
    strengths for every attribute without a target)."""
    z_sem, sliders = request.session.z_sem, request.sliders
    if sliders is None:
        return {}, z_sem.clone()
    solved = solve_target_strengths(
        z_sem, sliders, wanted, strengths=request.strengths, locks=request.locks
    )
    applied = {k: float(v) for k, v in request.strengths.items() if k not in wanted}
    applied.update(solved)
    return applied, edit_z_sem(z_sem, sliders, applied, locks=request.locks)


def unedited_render(
    studio: Studio,
    session: Session,
    T_render: int,
    callback: Callable[[dict[str, Any]], None] | None,
) -> torch.Tensor:
    """The unedited render (1, 3, S, S) in [0, 1] from the session's x_T, cached."""
    with torch.inference_mode():
        reference = studio.model.render(
            session.x_T, session.z_sem, T_render, callback=callback
        ).cpu()
    studio.references.remember(session, T_render, reference)
    return reference


def render_attempt(
    studio: Studio,
    request: EditRequest,
    reference: torch.Tensor | None,
    applied: dict[str, float],
    z_edit: torch.Tensor,
    *,
    steps: PhaseProgress,
    preview: PreviewCallback | None,
    cancel: CancelCheck | None,
) -> Attempt:
    """Render one edited code (the reference itself when nothing changed) and measure it."""
    if request.seed is None and torch.equal(z_edit, request.session.z_sem):
        images = reference
    else:
        callback = step_callback(
            request.T_render, on_step=steps.ddim("rendering"), preview=preview, cancel=cancel
        )
        with torch.inference_mode():
            images = studio.model.render(
                request.x_T, z_edit, request.T_render, callback=callback
            ).cpu()
    crop = to_image(images)
    measured = measure(studio, request.sliders, crop) if request.measure else {}
    return Attempt(applied, z_edit, images, crop, measured)


def correct_towards_targets(
    request: EditRequest, first: Attempt, draw: Callable[..., Attempt]
) -> tuple[Attempt, bool]:
    """(the attempt kept, whether it is a correction): a measured render that misses a target
    by more than ``TARGET_LANDING`` takes one corrective step on the measured gap (``draw``
    renders it); the correction is kept only when it lands closer."""
    targets = request.targets
    if not targets or not first.measured:
        return first, False
    miss = _target_miss(targets, first.measured)
    if miss <= TARGET_LANDING:
        return first, False
    start = probabilities(request.sliders, request.session.z_sem)
    asked = probabilities(request.sliders, first.z_edit)
    wanted = corrected_targets(targets, first.measured, start, asked)
    second = draw(*solve_strengths(request, wanted))
    if _target_miss(targets, second.measured) < miss:
        return second, True
    return first, False


def _edit_result(
    studio: Studio,
    request: EditRequest,
    attempt: Attempt,
    reference: torch.Tensor | None,
    corrected: bool,
    feather: float,
) -> EditResult:
    """The kept attempt pasted back into the photo, with its probabilities and recipe."""
    session, sliders = request.session, request.sliders
    aligned = session.aligned if session.kind == "photo" else None
    photo, mask, face_crop = compose(
        session.photo,
        aligned,
        attempt.images,
        reference,
        attempt.crop,
        mode=request.paste,
        feather=feather,
    )
    asked = probabilities(sliders, attempt.z_edit)
    return EditResult(
        crop=attempt.crop,
        photo=photo,
        mask=mask,
        face_crop=face_crop,
        paste=request.paste,
        z_sem=attempt.z_edit.cpu(),
        strengths=attempt.applied,
        probabilities_before=probabilities(sliders, session.z_sem),
        probabilities_after=attempt.measured if request.measure else asked,
        recipe=build_recipe(studio, request),
        probabilities_asked=asked,
        corrected=corrected,
    )


def measure(
    studio: Studio, sliders: AttributeClassifier | None, crop: Image.Image
) -> dict[str, float]:
    """The classifier on the rendered crop encoded again: what the picture shows."""
    if sliders is None:
        return {}
    with torch.inference_mode():
        z_sem = studio.model.encode(image_to_tensor(crop)[None]).cpu()
    return probabilities(sliders, z_sem)


def probabilities(sliders: AttributeClassifier | None, z_sem: torch.Tensor) -> dict[str, float]:
    """Attribute name -> classifier probability of a (1, D) code (empty without sliders)."""
    if sliders is None:
        return {}
    values = sliders.probabilities(z_sem.float().cpu())[0].tolist()
    return dict(zip(sliders.attribute_names, values, strict=True))


def attributes(
    studio: Studio, session: Session, custom_attributes: Sequence[AttributeClassifier]
) -> dict[str, float]:
    """See :meth:`Studio.attributes`."""
    check_session(studio, session)
    sliders = studio.slider_set(custom_attributes)
    if sliders is None:
        raise NoAttributeClassifier(
            "this model has no attribute classifier, so there are no attributes to read"
        )
    return probabilities(sliders, session.z_sem)


def to_image(images: torch.Tensor) -> Image.Image:
    """(1, 3, S, S) in [0, 1] -> RGB image."""
    return tensor_to_image(images[0] * 2.0 - 1.0)


def _target_miss(targets: Mapping[str, float], measured: Mapping[str, float]) -> float:
    """Largest distance between a target probability and the measured one."""
    return max(abs(float(p) - measured.get(name, float(p))) for name, p in targets.items())
