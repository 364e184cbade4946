"""Recipe kinds: how a spec becomes prompts, and how replies become rows."""

from __future__ import annotations

from factory.recipes.base import Recipe
from factory.recipes.classification import ClassificationRecipe
from factory.recipes.instruction import InstructionRecipe
from factory.spec import ClassificationSpec, InstructionSpec


def make_recipe(spec: ClassificationSpec | InstructionSpec) -> Recipe:
    """The Recipe for a validated spec."""
    if isinstance(spec, ClassificationSpec):
        return ClassificationRecipe(spec)
    return InstructionRecipe(spec)


__all__ = ["ClassificationRecipe", "InstructionRecipe", "Recipe", "make_recipe"]
