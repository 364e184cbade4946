"""Filters: each is chosen in a recipe by its `type:` and validated by its own Params.

Filters run in the order the recipe lists them. They return copies of the rows they annotate
(scores go into `meta`), because the build applies the chain again after every round.
"""

from __future__ import annotations

from typing import Annotated, Union

from pydantic import Field

from factory.filters.base import Filter, FilterContext, FilterParams, FilterResult
from factory.filters.confidence import Confidence
from factory.filters.conflicts import Conflicts
from factory.filters.critic import Critic
from factory.filters.exact import ExactDedup
from factory.filters.leakage import Leakage
from factory.filters.near_dedup import NearDedup
from factory.filters.novelty import Novelty
from factory.filters.quality import Quality
from factory.filters.rebalance import Rebalance
from factory.filters.semantic import SemanticDedup

FILTERS: dict[str, type[Filter]] = {
    f.type: f
    for f in (ExactDedup, Quality, NearDedup, SemanticDedup, Conflicts, Leakage, Confidence, Critic, Rebalance, Novelty)
}

FilterSpec = Annotated[Union[tuple(f.Params for f in FILTERS.values())], Field(discriminator="type")]  # type: ignore[misc]


def build_filter(params: FilterParams) -> Filter:
    """Instantiate the filter class that `params` belongs to."""
    return FILTERS[params.type](params)  # type: ignore[attr-defined]


__all__ = ["FILTERS", "Filter", "FilterContext", "FilterParams", "FilterResult", "FilterSpec", "build_filter"]
