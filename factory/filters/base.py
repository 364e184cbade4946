"""The filter contract: a stage that keeps some records and drops the rest, each with a reason."""

from __future__ import annotations

import statistics
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from factory.embeddings import Embedder
from factory.filters.params import FilterParams
from factory.records import WEIGHT, Completion, Prompt, Record, Rejected

# Fewer rows a person kept than this would sway a filter's model more than they inform it.
MIN_REVIEWED = 4


def enough_reviewed(rows: Sequence[Record]) -> list[Record]:
    """`rows` (a person's kept rows) when there are enough to learn from, else none."""
    return list(rows) if len(rows) >= MIN_REVIEWED else []


@dataclass(slots=True)
class FilterContext:
    """What a filter may learn from: the run's seed and labels, the user's real rows, shared embeddings.

    `real_train` are the real rows a filter may train on; `real_holdout` are rows it must never train
    on but may compare against (the leakage check protects both). `reviewed` are generated rows a person
    accepted or relabelled (run/decisions.py), which a filter may train on as it does on real rows (with at
    least MIN_REVIEWED of them: `enough_reviewed`). `embedder` is shared by every filter of the run, so
    each text is embedded once. `passages` are the grounding passages by id (a grounded row's meta names
    its `passage_id`). A stage that needs a model's judgement (`Filter.request`) reads
    the replies through `answer`: the build sends the requests, through its cache, before the stage runs.
    """

    seed: int = 0
    labels: tuple[str, ...] = ()
    real_train: Sequence[Record] = ()
    real_holdout: Sequence[Record] = ()
    embedder: Embedder | None = None
    passages: Mapping[str, str] = field(default_factory=dict)  # passage id -> text, for grounded recipes
    generators: tuple[str, ...] = ()  # the recipe's generator names, for stages that ask one (`request`)
    # The row fields that answer the row's first field (an instruction's response), judged by an answer's rules.
    answer_fields: tuple[str, ...] = ()
    answer: Callable[[Prompt], Completion | None] | None = None  # the build's reply to a stage's request
    # Rows a person kept in `factory review`, with the label they gave: the best labels a filter can learn from.
    reviewed: Sequence[Record] = ()

    def embeddings(self) -> Embedder:
        if self.embedder is None:
            self.embedder = Embedder()
        return self.embedder


@dataclass(slots=True)
class FilterResult:
    """Output of one stage: the kept rows in input order, the dropped ones with reasons, and stats."""

    kept: list[Record]
    dropped: list[Rejected]
    stats: dict[str, Any] = field(default_factory=dict)

    def funnel(self, stage: str, rows_in: int) -> dict[str, Any]:
        reasons = Counter(r.reason for r in self.dropped)
        return {"stage": stage, "in": rows_in, "kept": len(self.kept), "dropped": dict(sorted(reasons.items())),
                **({"stats": self.stats} if self.stats else {})}


def weight_spread(records: Sequence[Record], bucket_of: Callable[[Record], str]) -> dict[str, dict[str, Any]]:
    """Per bucket: rows, mean weight (records.WEIGHT) and its 10th / 50th / 90th percentiles (the card's table)."""
    by_bucket: dict[str, list[float]] = {}
    for record in records:
        by_bucket.setdefault(bucket_of(record), []).append(float(record.meta.get(WEIGHT, 1.0)))
    spread = {}
    for bucket, values in sorted(by_bucket.items()):
        # inclusive: numpy's default (linear) percentiles; one row is its own every percentile
        deciles = statistics.quantiles(values, n=10, method="inclusive") if len(values) > 1 else values * 9
        spread[bucket] = {"rows": len(values), "mean": round(statistics.fmean(values), 3),
                          "p10": round(deciles[0], 3), "p50": round(deciles[4], 3), "p90": round(deciles[8], 3)}
    return spread


def compared_text(record: Record, field: str | None = None, include_response: bool = False) -> str:
    """What a dedup stage compares: one named field ('' when the row lacks it), every text field, or the row's text."""
    if field is not None:
        return str(record.fields.get(field) or "")
    return "\n".join(record.texts()) if include_response else record.text


class Filter(ABC):
    """One stage of the filter chain, chosen in the recipe by `type:`."""

    type: ClassVar[str]
    Params: ClassVar[type[FilterParams]]
    # True when `apply` decides each row on its own, from the params, the fit and the context's seed and
    # labels only, and reports no stats: an engine may then split the rows into blocks (Ray Data).
    rowwise: ClassVar[bool] = False

    def __init__(self, params: FilterParams) -> None:
        self.params = params

    def fit(self, context: FilterContext) -> Self:
        """Learn from the context (real rows, seed). Filters that learn call `super().fit()` first."""
        self.context_ = context
        return self

    @property
    def context(self) -> FilterContext:
        """The fitted context; a filter applied without `fit` gets a default one (and its own embedder)."""
        if not hasattr(self, "context_"):
            self.fit(FilterContext())
        return self.context_

    def request(self, record: Record) -> Prompt | None:
        """A question this stage needs a generator to answer about `record` before `apply` (None: none).

        The build sends it through the run's request cache (a re-run sends nothing again) and hands the
        reply to `apply` through `context.answer`."""
        return None

    @abstractmethod
    def apply(self, records: Sequence[Record]) -> FilterResult:
        """Split `records` into kept and dropped. Deterministic for the same input and fit."""
