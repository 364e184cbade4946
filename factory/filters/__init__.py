"""Filters: each is chosen in a recipe by its `type:` and validated by its own Params.

Filters run in the order the recipe lists them. They return copies of the rows they annotate
(scores go into `meta`), because the build applies the chain again after every round.

The settings (`factory/filters/params.py`) are light; an implementation, which may need numpy,
scikit-learn or a model, is imported only when a build makes that filter.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Annotated, Union

from pydantic import Field

from factory.filters.params import (
    ConfidenceParams,
    ConflictsParams,
    CriticParams,
    ExactDedupParams,
    FaithfulnessParams,
    FilterParams,
    JudgeParams,
    LeakageParams,
    NearDedupParams,
    NoveltyParams,
    QualityParams,
    RebalanceParams,
    SemanticDedupParams,
    WeightParams,
)

if TYPE_CHECKING:
    from factory.filters.base import Filter

TEXT, TABLE = "text", "table"  # the row shapes a task kind makes (its spec's `row_shape`)

# Each filter: its `type:` -> (its settings, "module:Class" of its implementation per row shape it
# judges). One line per filter; a shape a filter lacks is refused when the recipe is validated.
_REGISTRY: dict[str, tuple[type[FilterParams], dict[str, str]]] = {
    "exact_dedup": (ExactDedupParams, {TEXT: "factory.filters.exact:ExactDedup", TABLE: "factory.tables.filters:RowDedup"}),
    "quality": (QualityParams, {TEXT: "factory.filters.quality:Quality"}),
    "near_dedup": (NearDedupParams, {TEXT: "factory.filters.near_dedup:NearDedup"}),
    "semantic_dedup": (SemanticDedupParams, {TEXT: "factory.filters.semantic:SemanticDedup"}),
    "conflicts": (ConflictsParams, {TEXT: "factory.filters.conflicts:Conflicts"}),
    "leakage": (LeakageParams, {TEXT: "factory.filters.leakage:Leakage", TABLE: "factory.tables.filters:RowLeakage"}),
    "confidence": (ConfidenceParams, {TEXT: "factory.filters.confidence:Confidence"}),
    "critic": (CriticParams, {TEXT: "factory.filters.critic:Critic"}),
    "rebalance": (RebalanceParams, {TEXT: "factory.filters.rebalance:Rebalance"}),
    "novelty": (NoveltyParams, {TEXT: "factory.filters.novelty:Novelty"}),
    "faithfulness": (FaithfulnessParams, {TEXT: "factory.filters.faithfulness:Faithfulness"}),
    "judge": (JudgeParams, {TEXT: "factory.filters.judge:Judge"}),
    "weight": (WeightParams, {TEXT: "factory.filters.weights:Weights"}),
}

FilterSpec = Annotated[Union[tuple(params for params, _ in _REGISTRY.values())], Field(discriminator="type")]  # type: ignore[misc]


def filter_class(filter_type: str, shape: str = TEXT) -> type[Filter]:
    """The implementation of `filter_type` for rows of `shape`, imported on first use."""
    module, name = _REGISTRY[filter_type][1][shape].split(":")
    return getattr(importlib.import_module(module), name)


def filters_for(shape: str) -> tuple[str, ...]:
    """The filter types that judge rows of `shape`."""
    return tuple(name for name, (_, impls) in _REGISTRY.items() if shape in impls)


# The registered filter types and their settings (the implementations load through filter_class).
FILTERS: dict[str, type[FilterParams]] = {name: params for name, (params, _) in _REGISTRY.items()}


def build_filter(params: FilterParams, shape: str = TEXT) -> Filter:
    """Instantiate the filter class that `params` belongs to, for rows of `shape`."""
    return filter_class(params.type, shape)(params)  # type: ignore[attr-defined]


__all__ = ["FILTERS", "TABLE", "TEXT", "FilterParams", "FilterSpec", "build_filter", "filter_class", "filters_for"]
