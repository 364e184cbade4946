"""confidence: drop a row whose intended label a classifier does not support."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from factory.filters.base import Filter, FilterContext, FilterResult, enough_reviewed
from factory.filters.params import ConfidenceParams
from factory.filters.probe import crossfit_proba, fit_proba
from factory.records import Record, Rejected
from factory.training import train_setfit


class Confidence(Filter):
    """Keeps a row only if a classifier gives its label at least `min_prob`.

    With real training rows of two labels or more, the linear probe is cross-fitted on the synthetic
    rows with the real rows in every fold (`train_on: real+synthetic`, the default: a few real rows
    alone give a biased probe), or trained on the real rows alone (`train_on: real`, and always for
    SetFit). Rows a person accepted or relabelled in `factory review` (4 or more) join the real rows.
    Without either, it is cross-fitted on the synthetic rows alone. Either way no row is scored
    by a model that saw it. A row whose label the classifier cannot score (no real rows of that label,
    too few synthetic rows to cross-fit, no label at all) passes through unscored and is counted in
    the stats.
    """

    type = "confidence"
    Params = ConfidenceParams
    params: ConfidenceParams

    def fit(self, context: FilterContext) -> Confidence:
        super().fit(context)
        # Rows a person kept carry labels as good as real ones: with enough of them, they train the classifier too.
        reviewed = enough_reviewed([r for r in context.reviewed if r.label is not None])
        self.reviewed_rows_ = len(reviewed)
        train = [r for r in context.real_train if r.label is not None] + reviewed
        # Label order: the recipe's first, then any extra real label, so stats read in recipe order.
        order = {label: i for i, label in enumerate(context.labels)}
        self.train_labels_ = sorted({r.label for r in train}, key=lambda label: (order.get(label, len(order)), label))
        self.train_rows_ = len(train) if len(self.train_labels_) >= 2 else 0
        self.setfit_: Any = None
        self.train_x_: np.ndarray | None = None
        self.train_y_: list[str] = [r.label for r in train]  # type: ignore[misc]
        if not self.train_rows_:
            return self
        texts = [r.text for r in train]
        if self.params.classifier == "setfit":
            index = {label: i for i, label in enumerate(self.train_labels_)}
            # The head gets the probe's C, so min_prob means the same for both classifiers.
            self.setfit_, _ = train_setfit(
                texts, [index[y] for y in self.train_y_], seed=context.seed, head_params={"C": self.params.C},
                num_iterations=self.params.setfit_iterations, num_epochs=self.params.setfit_epochs,
                batch_size=self.params.setfit_batch_size, max_length=self.params.setfit_max_length,
            )
        else:
            self.train_x_ = context.embeddings().encode(texts)
        return self

    def _score(self, records: list[Record]) -> tuple[list[int], list[str], np.ndarray, dict[str, Any]]:
        """(indices of scored rows, label columns, their probabilities, how the classifier was trained)."""
        context = self.context
        if self.train_rows_:
            labels = self.train_labels_
            known = set(labels)
            idx = [i for i, r in enumerate(records) if r.label in known]
            texts = [records[i].text for i in idx]
            real: dict[str, Any] = {"trained_on": "real", "train_rows": self.train_rows_}
            if not idx:
                return idx, labels, np.zeros((0, len(labels))), {"classifier": self.params.classifier, **real}
            if self.setfit_ is not None:
                proba = np.asarray(self.setfit_.predict_proba(texts, as_numpy=True), dtype=np.float64)
                out = np.zeros((len(texts), len(labels)))
                for column, target in enumerate(self.setfit_.model_head.classes_):
                    out[:, int(target)] = proba[:, column]
                return idx, labels, out, {"classifier": "setfit", **real}
            x = context.embeddings().encode(texts)
            y = [records[i].label for i in idx]
            folds = min(self.params.folds, min(Counter(y).values()))
            if self.params.train_on == "real+synthetic" and folds >= 2:
                proba = crossfit_proba(x, y, labels, context.seed, folds=folds, C=self.params.C,
                                       anchor_x=self.train_x_, anchor_y=self.train_y_)
                return idx, labels, proba, {"classifier": "linear", "trained_on": "real+synthetic (cross-fit)",
                                            "train_rows": self.train_rows_ + len(idx), "folds": folds}
            # Too few synthetic rows per label to cross-fit: the real rows alone still score them.
            proba = fit_proba(self.train_x_, self.train_y_, x, labels, context.seed, C=self.params.C)
            return idx, labels, proba, {"classifier": "linear", **real}
        # Cross-fit: only labels with two rows or more can be split into folds.
        counts = Counter(r.label for r in records if r.label is not None)
        labels = sorted(label for label, n in counts.items() if n >= 2)
        how: dict[str, Any] = {"classifier": "linear", "trained_on": "synthetic (cross-fit)"}
        if self.params.classifier == "setfit":
            how["note"] = "setfit needs real rows of two labels or more; cross-fitted the linear probe instead"
        if len(labels) < 2:
            return [], labels, np.zeros((0, 0)), {**how, "train_rows": 0,
                                                  "skipped": "fewer than two labels with two rows or more"}
        known = set(labels)
        idx = [i for i, r in enumerate(records) if r.label in known]
        x = context.embeddings().encode([records[i].text for i in idx])
        y = [records[i].label for i in idx]
        folds = min(self.params.folds, min(counts[label] for label in labels))
        proba = crossfit_proba(x, y, labels, context.seed, folds=folds, C=self.params.C)
        return idx, labels, proba, {**how, "train_rows": len(idx), "folds": folds}

    def apply(self, records: Sequence[Record]) -> FilterResult:
        records = list(records)
        idx, labels, proba, stats = self._score(records)
        column = {label: j for j, label in enumerate(labels)}
        scores: dict[int, Record] = {}
        low: dict[int, str] = {}
        for row, i in enumerate(idx):
            record = records[i]
            p = float(proba[row, column[record.label]])  # type: ignore[index]
            scores[i] = dataclasses.replace(record, meta={**record.meta, "confidence": p})
            if p < self.params.min_prob:
                low[i] = self._detail(record.label, p, proba[row], labels)  # type: ignore[arg-type]
        kept = [scores.get(i, r) for i, r in enumerate(records) if i not in low]
        dropped = [Rejected.from_record(scores[i], self.type, "low_confidence", detail) for i, detail in low.items()]
        unscored = Counter(r.label or "(none)" for i, r in enumerate(records) if i not in scores)
        stats |= {"scored": len(idx), "unscored": sum(unscored.values())}
        if self.reviewed_rows_:
            stats["reviewed_rows"] = self.reviewed_rows_
        if idx:
            stats["mean_confidence"] = round(float(np.mean([scores[i].meta["confidence"] for i in idx])), 4)
        if unscored:
            stats["unscored_labels"] = dict(sorted(unscored.items()))
        return FilterResult(kept, dropped, stats)

    def _detail(self, label: str, p: float, row: np.ndarray, labels: list[str]) -> str:
        text = f"p({label})={p:.2f} < {self.params.min_prob:g}"
        others = [(float(row[j]), other) for j, other in enumerate(labels) if other != label]
        if others:
            best_p, best = max(others)
            text += f"; classifier prefers {best} ({best_p:.2f})" if best_p > p else "; still its top label"
        return text
