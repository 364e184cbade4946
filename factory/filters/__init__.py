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
    LeakageParams,
    NearDedupParams,
    NoveltyParams,
    QualityParams,
    RebalanceParams,
    SemanticDedupParams,
)

if TYPE_CHECKING:
    from factory.filters.base import Filter

# Each filter: its `type:` -> (its settings, "module:Class" of its implementation). One line per filter.
_REGISTRY: dict[str, tuple[type[FilterParams], str]] = {
    "exact_dedup": (ExactDedupParams, "factory.filters.exact:ExactDedup"),
    "quality": (QualityParams, "factory.filters.quality:Quality"),
    "near_dedup": (NearDedupParams, "factory.filters.near_dedup:NearDedup"),
    "semantic_dedup": (SemanticDedupParams, "factory.filters.semantic:SemanticDedup"),
    "conflicts": (ConflictsParams, "factory.filters.conflicts:Conflicts"),
    "leakage": (LeakageParams, "factory.filters.leakage:Leakage"),
    "confidence": (ConfidenceParams, "factory.filters.confidence:Confidence"),
    "critic": (CriticParams, "factory.filters.critic:Critic"),
    "rebalance": (RebalanceParams, "factory.filters.rebalance:Rebalance"),
    "novelty": (NoveltyParams, "factory.filters.novelty:Novelty"),
    "faithfulness": (FaithfulnessParams, "factory.filters.faithfulness:Faithfulness"),
}

FilterSpec = Annotated[Union[tuple(params for params, _ in _REGISTRY.values())], Field(discriminator="type")]  # type: ignore[misc]


def filter_class(filter_type: str) -> type[Filter]:
    """The implementation of `filter_type`, imported on first use."""
    module, name = _REGISTRY[filter_type][1].split(":")
    return getattr(importlib.import_module(module), name)


# The registered filter types and their settings (the implementations load through filter_class).
FILTERS: dict[str, type[FilterParams]] = {name: params for name, (params, _) in _REGISTRY.items()}


def build_filter(params: FilterParams) -> Filter:
    """Instantiate the filter class that `params` belongs to."""
    return filter_class(params.type)(params)  # type: ignore[attr-defined]


__all__ = ["FILTERS", "FilterParams", "FilterSpec", "build_filter", "filter_class"]
