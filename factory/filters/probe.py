"""Label probabilities from a linear probe on shared embeddings: fitted on real rows, or cross-fitted.

Used by the filters that ask "does a classifier support this row's label?" (confidence, conflicts)
so that they agree on what "supported" means.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from factory.errors import require


def _probe(seed: int):  # noqa: ANN202 - an sklearn estimator
    linear_model = require("sklearn.linear_model", "eval")
    return linear_model.LogisticRegression(max_iter=1000, C=1.0, random_state=seed)


def _proba(model, x: np.ndarray, labels: Sequence[str]) -> np.ndarray:  # noqa: ANN001
    """Probabilities in the column order of `labels` (a label the model never saw gets 0)."""
    out = np.zeros((len(x), len(labels)), dtype=np.float64)
    if len(x) == 0:
        return out
    proba = model.predict_proba(x)
    index = {label: i for i, label in enumerate(labels)}
    for column, label in enumerate(model.classes_):
        if label in index:
            out[:, index[label]] = proba[:, column]
    return out


def fit_proba(train_x: np.ndarray, train_y: Sequence[str], x: np.ndarray, labels: Sequence[str], seed: int) -> np.ndarray:
    """Train on (train_x, train_y), predict x. Needs at least two classes in train_y."""
    model = _probe(seed).fit(train_x, list(train_y))
    return _proba(model, x, labels)


def crossfit_proba(x: np.ndarray, y: Sequence[str], labels: Sequence[str], seed: int, folds: int = 5) -> np.ndarray:
    """Out-of-fold probabilities: no row is scored by a model that saw it.

    Returns uniform probabilities when there is too little data to fit (fewer than two labels, or a
    label with fewer rows than folds) rather than failing.
    """
    model_selection = require("sklearn.model_selection", "eval")
    y = np.asarray(list(y))
    out = np.full((len(x), len(labels)), 1.0 / max(len(labels), 1))
    classes, counts = np.unique(y, return_counts=True) if len(y) else (np.array([]), np.array([]))
    k = min(folds, int(counts.min()) if len(counts) else 0)
    if len(classes) < 2 or k < 2:
        return out
    splitter = model_selection.StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    for train_idx, test_idx in splitter.split(x, y):
        out[test_idx] = fit_proba(x[train_idx], y[train_idx], x[test_idx], labels, seed)
    return out
