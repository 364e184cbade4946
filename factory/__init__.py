"""dataset-factory: manufacture fine-tuning datasets with language models, then prove they are worth training on.

The public names load on first use (PEP 562), so `factory --help` and `factory validate` import
neither numpy nor torch nor any filter implementation.
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "build": "factory.api", "BuildResult": "factory.builder.builder", "compare": "factory.comparison",
    "load_recipe": "factory.recipe_file", "parse_recipe": "factory.recipe_file",
    "ClassificationSpec": "factory.tasks", "InstructionSpec": "factory.tasks",
    "Completion": "factory.records", "Prompt": "factory.records", "Record": "factory.records", "Rejected": "factory.records",
    "FactoryError": "factory.errors", "GenerationError": "factory.errors", "RecipeError": "factory.errors",
    "RunLockedError": "factory.errors",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'factory' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
