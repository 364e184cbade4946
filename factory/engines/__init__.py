"""Where a build's heavy steps run: in this process (`local`, the default) or on a Ray cluster (`ray`).

An engine makes the build's generators, its embedder and its filter stages. The build is the same
code either way and writes the same output; only where the work happens changes. Nothing here
imports Ray: `make_engine` loads `factory.engines.ray_engine` only for `engine: {name: ray}`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from factory.embeddings import Embedder
from factory.filters.base import Filter
from factory.generators import build_generator
from factory.generators.base import Generator, GeneratorParams
from factory.spec import EngineSpec


class Engine:
    """The local engine: every step in this process. A subclass moves some of them elsewhere."""

    name = "local"

    def generator(self, params: GeneratorParams) -> Generator:
        """The backend that answers one entry of the recipe's `generators:`."""
        return build_generator(params)

    def embedder(self, cache: Path | None) -> Embedder:
        """The run's shared embedder (`cache`: its SQLite file)."""
        return Embedder(cache=cache)

    def stage(self, stage: Filter) -> Filter:
        """`stage`, or a stage with the same decisions that runs on this engine."""
        return stage

    def describe(self) -> dict[str, Any]:
        """What the manifest records about where the build ran."""
        return {"name": self.name}


def make_engine(spec: EngineSpec) -> Engine:
    """The engine a recipe's `engine:` names."""
    if spec.name == "ray":
        from factory.engines.ray_engine import RayEngine

        return RayEngine(spec)
    return Engine()
