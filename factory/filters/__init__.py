"""Filters: each is chosen in a recipe by its `type:` and validated by its own Params."""

from __future__ import annotations

from typing import Annotated, Union

from pydantic import Field

from factory.filters.base import Filter, FilterContext, FilterParams, FilterResult
from factory.filters.exact import ExactDedup
from factory.filters.novelty import Novelty

FILTERS: dict[str, type[Filter]] = {f.type: f for f in (ExactDedup, Novelty)}

FilterSpec = Annotated[Union[tuple(f.Params for f in FILTERS.values())], Field(discriminator="type")]  # type: ignore[misc]


def build_filter(params: FilterParams) -> Filter:
    """Instantiate the filter class that `params` belongs to."""
    return FILTERS[params.type](params)  # type: ignore[attr-defined]


__all__ = ["FILTERS", "Filter", "FilterContext", "FilterParams", "FilterResult", "FilterSpec", "build_filter"]
