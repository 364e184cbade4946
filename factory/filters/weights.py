"""weight: give every row a weight in [0, 1] (how far to trust its label), and drop only below a threshold."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from factory.filters.base import Filter, FilterContext, FilterResult, weight_spread
from factory.filters.confidence import Confidence
from factory.filters.params import ConfidenceParams, WeightParams
from factory.filters.sungen import learned_weights
from factory.records import WEIGHT, Record, Rejected


class Weights(Filter):
    """Sets each row's `weight` (records.WEIGHT) to the product of its `sources`, and drops a row under `min_weight`.

    A weight instead of a verdict: the evaluators (and a user's own training, from the dataset's weight column)
    count a doubtful row less rather than not at all. The stats give the weights' spread per label for the card.
    """

    type = "weight"
    Params = WeightParams
    params: WeightParams

    def fit(self, context: FilterContext) -> Weights:
        super().fit(context)
        if "confidence" in self.params.sources:
            self.probe_ = Confidence(ConfidenceParams(min_prob=0.0)).fit(context)
        return self

    def _confidence(self, records: list[Record]) -> np.ndarray:
        scored = {r.id: r.meta["confidence"] for r in self.probe_.apply(records).kept if "confidence" in r.meta}
        return np.array([scored.get(r.id, 1.0) for r in records])  # a row the probe cannot score keeps its weight

    def _learned(self, records: list[Record]) -> np.ndarray:
        labels = sorted({r.label for r in records if r.label is not None})
        if len(labels) < 2:
            return np.ones(len(records))
        index = {label: i for i, label in enumerate(labels)}
        rows = [i for i, r in enumerate(records) if r.label is not None]
        learned = learned_weights(self.context.embeddings().encode([records[i].text for i in rows]),
                                  [index[records[i].label] for i in rows], len(labels),  # type: ignore[index]
                                  outer_steps=self.params.outer_steps, inner_steps=self.params.inner_steps)
        out = np.ones(len(records))
        out[rows] = learned
        return out

    def apply(self, records: Sequence[Record]) -> FilterResult:
        records = list(records)
        if not records:
            return FilterResult([], [], {})
        parts: dict[str, np.ndarray] = {}
        for source in self.params.sources:
            if source == "agreement":
                parts[source] = np.array([float(r.meta.get(WEIGHT, 1.0)) for r in records])
            elif source == "confidence":
                parts[source] = self._confidence(records)
            else:
                parts[source] = self._learned(records)
        weights = np.prod(np.vstack(list(parts.values())), axis=0)
        kept: list[Record] = []
        dropped: list[Rejected] = []
        for i, record in enumerate(records):
            scores = {f"weight_{name}": round(float(values[i]), 4) for name, values in parts.items()}
            weighed = dataclasses.replace(record, meta={**record.meta, **scores, WEIGHT: round(float(weights[i]), 4)})
            if weights[i] < self.params.min_weight:
                detail = f"weight {weights[i]:.2f} < {self.params.min_weight:g} (" + ", ".join(
                    f"{name} {values[i]:.2f}" for name, values in parts.items()) + ")"
                dropped.append(Rejected.from_record(weighed, self.type, "low_weight", detail))
            else:
                kept.append(weighed)
        return FilterResult(kept, dropped, {"sources": list(parts), "weights": weight_spread(kept, lambda r: r.label or "")})
