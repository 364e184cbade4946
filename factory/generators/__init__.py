"""Generator backends, looked up by the recipe's `backend:`. Backends import their heavy libraries lazily."""

from __future__ import annotations

import importlib

from factory.generators.base import Generator, GeneratorParams

# backend -> "module:Class"; modules load only when a recipe uses the backend.
BACKENDS = {
    "openai": "factory.generators.openai_compat:OpenAIGenerator",
    "llamacpp": "factory.generators.llamacpp:LlamaCppGenerator",
    "transformers": "factory.generators.transformers_local:TransformersGenerator",
}


def build_generator(params: GeneratorParams) -> Generator:
    """The (unloaded) generator for one entry of a recipe's `generators:`."""
    module, cls = BACKENDS[params.backend].split(":")  # type: ignore[attr-defined]
    return getattr(importlib.import_module(module), cls)(params)


__all__ = ["BACKENDS", "Generator", "GeneratorParams", "build_generator"]
