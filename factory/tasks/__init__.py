"""Task kinds, keyed by the recipe's `task:` value (the way filters are keyed by `type:`).

Adding a kind: write its module (spec model + Recipe subclass), its prompt templates, one line in
`TASKS`, and its tests. The build, compare, card, report and push ask the kind, never test for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from factory.records import Record
from factory.spec import RecipeBase
from factory.tasks.base import Recipe
from factory.tasks.classification import ClassificationRecipe, ClassificationSpec
from factory.tasks.code import CodeRecipe, CodeSpec
from factory.tasks.instruction import InstructionRecipe, InstructionSpec
from factory.tasks.preference import PreferenceRecipe
from factory.tasks.table import TableRecipe, TableSpec

if TYPE_CHECKING:
    from factory.corpus.selection import PassagePicker

TASKS: dict[str, type[Recipe]] = {kind.kind: kind for kind in (ClassificationRecipe, InstructionRecipe, TableRecipe, CodeRecipe,
                                                                     PreferenceRecipe)}


def task_kind(name: str) -> type[Recipe]:
    """The kind registered under `name` (a recipe's or a manifest's `task`)."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(TASKS)}") from None


def make_recipe(spec: RecipeBase, real_train: Sequence[Record] = (), passages: PassagePicker | None = None) -> Recipe:
    """The Recipe for a validated spec; real training rows (never validation rows) may join the few-shot
    pool, and a grounded recipe takes the run's passage picker."""
    return task_kind(spec.task)(spec, real_train, passages)


__all__ = ["TASKS", "ClassificationRecipe", "ClassificationSpec", "CodeRecipe", "CodeSpec", "InstructionRecipe",
           "InstructionSpec", "Recipe",
           "TableRecipe", "TableSpec", "make_recipe", "task_kind"]
