"""Recipes: what a render records so that the same edit can be replayed on the same photo."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..classifier import AttributeClassifier
from ..errors import RecipeError
from ..imaging import ImageSource
from ..session import (
    EditResult,
    ProgressCallback,
    Recipe,
    custom_attribute_from_dict,
    custom_attribute_to_dict,
)
from .sessions import check_model

if TYPE_CHECKING:
    from .facade import Studio
    from .rendering import EditRequest

__all__ = ["apply_recipe", "build_recipe", "one_row"]

_OTHER_MODEL = (
    "the recipe was made with model {theirs} but {ours} is loaded; load that model to replay it"
)


def build_recipe(studio: Studio, request: EditRequest) -> Recipe:
    """The recipe of a render: its arguments, the model, and the custom attributes it used."""
    session = request.session
    used = set(request.strengths) | set(request.targets) | set(request.locks)
    return Recipe(
        model_id=studio.model_id,
        model_revision=studio.model_revision,
        T_inv=session.T_inv,
        T_render=request.T_render,
        strengths=request.strengths,
        locks=request.locks,
        targets=request.targets,
        seed=request.seed,
        face_index=session.face_index,
        paste=request.paste,
        custom_attributes={
            name: custom_attribute_to_dict(one_row(c, name))
            for c in request.custom_attributes
            for name in c.attribute_names
            if name in used
        },
    )


def one_row(classifier: AttributeClassifier, name: str) -> AttributeClassifier:
    """The row of ``name`` as a one-attribute classifier (same statistics)."""
    if len(classifier.attribute_names) == 1:
        return classifier
    index = classifier.index(name)
    return AttributeClassifier(
        attribute_names=(name,),
        weight=classifier.weight[index : index + 1].clone(),
        bias=classifier.bias[index : index + 1].clone(),
        z_mean=classifier.z_mean,
        z_std=classifier.z_std,
        source=classifier.source,
        directions=(
            None if classifier.directions is None else classifier.directions[index : index + 1]
        ),
    )


def apply_recipe(
    studio: Studio,
    photo: ImageSource,
    recipe: Recipe,
    *,
    aligned: bool,
    paste: str | None,
    progress: ProgressCallback | None,
) -> EditResult:
    """See :meth:`Studio.apply_recipe`: encode the photo as the recipe did, render it again."""
    if not isinstance(recipe, Recipe):
        raise RecipeError("expected a Recipe (use Recipe.from_json to read one)")
    check_model(studio, (recipe.model_id, recipe.model_revision), RecipeError, _OTHER_MODEL)
    if recipe.T_inv < 1:
        raise RecipeError(
            "the recipe was made on a random face, not a photo; it has no x_T to replay"
        )
    custom = [custom_attribute_from_dict(n, d) for n, d in recipe.custom_attributes.items()]
    if aligned:
        session = studio.encode_aligned(photo, T_inv=recipe.T_inv, progress=progress)
    else:
        session = studio.encode_photo(
            photo, face_index=recipe.face_index, T_inv=recipe.T_inv, progress=progress
        )
    return studio.render(
        session,
        recipe.strengths,
        locks=recipe.locks,
        targets=recipe.targets,
        T_render=recipe.T_render,
        seed=recipe.seed,
        custom_attributes=custom,
        paste=recipe.paste if paste is None else paste,
        progress=progress,
    )
