"""critic: drop the synthetic rows that a real-vs-synthetic classifier finds most artificial."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from factory.errors import require
from factory.filters.base import Filter, FilterResult, enough_reviewed
from factory.filters.params import CriticParams
from factory.filters.probe import crossfit_proba
from factory.records import Record, Rejected

_CLASSES = ("real", "synthetic")
_SENTENCE_END = re.compile(r"[.!?]+(?:\s|$)")


class Critic(Filter):
    """A real-vs-synthetic critic: drops the synthetic rows that look least like the user's data.

    Logistic regression on the shared embeddings (or on surface style measures, `features`), with
    balanced class weights because real rows are few, cross-fitted over real + synthetic rows so that
    every score comes from a model that did not see the row. Only `real_train` is used: the holdout rows are
    validation data. Rows a person kept in `factory review` join the real side (with at least MIN_REVIEWED of
    them). The ROC AUC of the out-of-fold scores, before and after the drop, says how separable the two sets
    were and still are (0.5: indistinguishable).
    """

    type = "critic"
    Params = CriticParams
    params: CriticParams

    def _skip(self, records: list[Record], n_real: int) -> str | None:
        if n_real < self.params.min_real:
            return f"only {n_real} real rows; need {self.params.min_real}"
        if len(records) < 2:
            return f"only {len(records)} synthetic rows; need 2"
        return None

    def _features(self, texts: list[str]) -> np.ndarray:
        if self.params.features == "style":
            return style_features(texts)
        return self.context.embeddings().encode(texts)

    def apply(self, records: Sequence[Record]) -> FilterResult:
        context = self.context
        records = list(records)
        real = [r.text for r in context.real_train]
        reason = self._skip(records, len(real))
        if reason is not None:
            return FilterResult(records, [], {"skipped": reason, "real_rows": len(real), "synthetic_rows": len(records)})

        # Rows a person kept are what the data should look like, as real rows are: with enough of them they
        # train on the real side (those among `records` too, still scored out of fold), so that rows like
        # them stop counting as artificial. Separability (the AUC) is measured on the rows nobody reviewed.
        reviewed = {r.id: r.text for r in enough_reviewed(context.reviewed)}
        here = {r.id for r in records}
        extra = [text for i, text in reviewed.items() if i not in here]
        x = self._features(real + extra + [r.text for r in records])
        y = np.array([0] * (len(real) + len(extra)) + [int(r.id not in reviewed) for r in records])
        folds = min(self.params.folds, int((y == 0).sum()), int(y.sum()))
        scores = crossfit_proba(x, [_CLASSES[v] for v in y], _CLASSES, context.seed, folds=folds,
                                class_weight="balanced", C=self.params.C)[:, 1]
        synthetic = scores[len(real) + len(extra):]
        # The user's rows against the generated rows nobody reviewed.
        unreviewed = np.array([True] * len(real) + [False] * len(extra) + [r.id not in reviewed for r in records])
        origin = np.array([0] * len(real) + [1] * (len(extra) + len(records)))
        # Rank 1 = most artificial; ties go to the earlier row so the choice is stable.
        order = sorted(range(len(records)), key=lambda i: (-synthetic[i], i))
        rank = {i: r + 1 for r, i in enumerate(order)}
        if self.params.threshold is not None:
            drop = {i for i in order if synthetic[i] > self.params.threshold}
            rule = f"threshold {self.params.threshold:g}"
        else:
            fraction = self.params.drop_fraction or 0.0
            drop = set(order[: math.floor(fraction * len(records) + 1e-9)])
            rule = f"drop_fraction {fraction:g}"

        kept, dropped = [], []
        for i, record in enumerate(records):
            scored = dataclasses.replace(record, meta={**record.meta, "critic_score": float(synthetic[i])})
            if i in drop:
                detail = f"P(synthetic)={synthetic[i]:.2f}, rank {rank[i]}/{len(records)} most artificial ({rule})"
                dropped.append(Rejected.from_record(scored, self.type, "too_artificial", detail))
            else:
                kept.append(scored)
        kept_mask = unreviewed & np.array([True] * (len(real) + len(extra)) + [i not in drop for i in range(len(records))])
        stats: dict[str, Any] = {
            "real_rows": len(real), "synthetic_rows": len(records), "folds": folds, "rule": rule,
            "auc_before": _auc(origin[unreviewed], scores[unreviewed]),
            "auc_after": _auc(origin[kept_mask], scores[kept_mask]),
            "mean_score_real": round(float(scores[: len(real)].mean()), 4),
            "mean_score_synthetic": round(float(synthetic.mean()), 4),
            **({"reviewed_rows": len(reviewed)} if reviewed else {}),
        }
        return FilterResult(kept, dropped, stats)


def style_features(texts: Sequence[str]) -> np.ndarray:
    """Per text: log word count, log sentence count, commas per word (few enough to fit on 8 real rows)."""
    words = np.array([max(1, len(t.split())) for t in texts], dtype=np.float64)
    sentences = np.array([max(1, len(_SENTENCE_END.findall(t))) for t in texts], dtype=np.float64)
    commas = np.array([t.count(",") for t in texts], dtype=np.float64)
    return np.column_stack([np.log(words), np.log(sentences), commas / words]).reshape(len(texts), 3)


def _auc(y: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC AUC of P(synthetic) for synthetic vs real; None when one side is empty."""
    if len(set(y.tolist())) < 2:
        return None
    metrics = require("sklearn.metrics", "eval")
    return round(float(metrics.roc_auc_score(y, scores)), 4)
