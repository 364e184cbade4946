"""The fast evaluator: logistic regression on frozen MiniLM sentence embeddings, with each row's weight.

It runs for every condition x seed x filter stage, so it reuses the run's shared `Embedder`: a text
embedded by a filter is never embedded again here. The helpers below (`training_rows`, `cap_rows`,
`constant_predictions`) are shared with the fine-tuning evaluators, which must degrade the same way
on a training set that cannot teach a classifier anything.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from factory.embeddings import Embedder
from factory.errors import require
from factory.eval.base import Evaluator, Predictions
from factory.eval.names import LINEAR
from factory.eval.params import LinearParams
from factory.records import WEIGHT, Record


@dataclass
class TrainingSet:
    """The usable training rows: texts, labels, each row's weight (records.WEIGHT), and what was dropped (info)."""

    texts: list[str]
    ys: list[str]
    weights: list[float]
    info: dict[str, Any]

    @property
    def weighted(self) -> bool:
        """True when some row's weight is not 1: the evaluators then train with the weights."""
        return any(w != 1.0 for w in self.weights)


def training_rows(train: Sequence[Record], labels: Sequence[str]) -> TrainingSet:
    """The usable training rows: a label outside `labels` (or none) is skipped, and so is a row of weight 0."""
    known = set(labels)
    usable = [r for r in train if r.label in known and float(r.meta.get(WEIGHT, 1.0)) > 0]
    rows = TrainingSet([r.text for r in usable], [str(r.label) for r in usable],
                       [float(r.meta.get(WEIGHT, 1.0)) for r in usable], {"train_rows": len(usable)})
    if len(usable) < len(train):
        rows.info["skipped_rows"] = len(train) - len(usable)
    if rows.weighted:
        rows.info["weighted"] = True
    return rows


def cap_rows(train: Sequence[Record], cap: int, seed: int) -> list[Record]:
    """At most `cap` rows: every real row (meta source "real") first, then a seeded sample of the rest."""
    if len(train) <= cap:
        return list(train)
    real = [r for r in train if r.meta.get("source") == "real"][:cap]
    others = [r for r in train if r.meta.get("source") != "real"]
    picked = sorted(random.Random(f"{seed}/cap").sample(range(len(others)), cap - len(real)))
    return real + [others[i] for i in picked]


def constant_predictions(ys: Sequence[str], validation: Sequence[Record], labels: Sequence[str],
                         info: dict[str, Any], started: float) -> Predictions | None:
    """The answer when `ys` has fewer than two labels: predict the one label (or the first label when
    there is no training row at all). None when there is something to learn.

    A filter stage can legitimately empty a label; scoring that condition as "always the survivor" is
    the honest number, and a crash would lose every other condition's score.
    """
    counts = Counter(ys)
    if len(counts) >= 2:
        return None
    if counts:
        label, reason = counts.most_common(1)[0][0], "one label in the training set"
    else:
        label, reason = (labels[0] if labels else ""), "empty training set"
    return Predictions(
        predicted=[label] * len(validation), gold=[r.label or "" for r in validation],
        seconds=time.perf_counter() - started, info={**info, "degenerate": reason, "constant_label": label},
    )


class LinearEvaluator(Evaluator):
    """Logistic regression (scikit-learn, lbfgs) on the shared, frozen MiniLM embeddings."""

    name = LINEAR
    Params = LinearParams

    def predict(self, train: Sequence[Record], validation: Sequence[Record], labels: Sequence[str], *,
                seed: int, save_to: str | None = None) -> Predictions:
        started = time.perf_counter()
        params: LinearParams = self.params  # type: ignore[assignment]
        rows = training_rows(train, labels)
        texts, ys, info = rows.texts, rows.ys, rows.info
        constant = constant_predictions(ys, validation, labels, info, started)
        if constant is not None:
            return constant
        if self.embedder is None:
            # kept on the instance so that repeated calls (seeds, stages) share the memo
            self.embedder = Embedder()
        linear_model = require("sklearn.linear_model", "eval")
        model = linear_model.LogisticRegression(
            C=params.C, max_iter=params.max_iter, class_weight=params.class_weight, random_state=seed,
        )
        model.fit(self.embedder.encode(texts), ys, sample_weight=rows.weights if rows.weighted else None)
        predicted = [str(p) for p in model.predict(self.embedder.encode([r.text for r in validation]))] if validation else []
        if save_to is not None:
            _save(model, save_to)
            info["saved_to"] = save_to
        return Predictions(
            predicted=predicted, gold=[r.label or "" for r in validation],
            seconds=time.perf_counter() - started, info=info,
        )


def _save(model: Any, path: str) -> None:
    """The fitted scikit-learn model as `<path>/linear.joblib`; its inputs are the Embedder's vectors."""
    joblib = require("joblib", "eval")
    Path(path).mkdir(parents=True, exist_ok=True)
    joblib.dump(model, Path(path) / "linear.joblib")


def prepare_training(train: Sequence[Record], validation: Sequence[Record], labels: Sequence[str], max_rows: int,
                     seed: int, started: float) -> TrainingSet | Predictions:
    """Capped, label-checked training rows; or constant predictions when there is nothing to train."""
    capped = cap_rows(train, max_rows, seed)
    rows = training_rows(capped, labels)
    if len(capped) < len(train):
        rows.info["capped_from"] = len(train)
    constant = constant_predictions(rows.ys, validation, labels, rows.info, started)
    return constant if constant is not None else rows
