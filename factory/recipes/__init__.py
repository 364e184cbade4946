"""Recipe kinds: how a spec becomes prompts, and how replies become rows."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from factory.recipes.base import Recipe
from factory.records import Record
from factory.recipes.classification import ClassificationRecipe
from factory.recipes.instruction import InstructionRecipe
from factory.spec import ClassificationSpec, InstructionSpec


def make_recipe(spec: ClassificationSpec | InstructionSpec, real_train: Sequence[Record] = ()) -> Recipe:
    """The Recipe for a validated spec; real training rows (never validation rows) join the few-shot pool."""
    if isinstance(spec, ClassificationSpec):
        examples: dict[str, list[str]] = defaultdict(list)
        for row in real_train:
            examples[row.label or ""].append(row.text)
        return ClassificationRecipe(spec, examples)
    return InstructionRecipe(spec)


__all__ = ["ClassificationRecipe", "InstructionRecipe", "Recipe", "make_recipe"]
