"""Label probabilities from a linear probe on shared embeddings: fitted on real rows, or cross-fitted.

Used by the filters that ask "does a classifier support this row's label?" (confidence, conflicts)
so that they agree on what "supported" means.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from factory.errors import require


def _probe(seed: int, class_weight: str | None = None, C: float = 1.0):  # noqa: ANN202, N803 - sklearn's name
    linear_model = require("sklearn.linear_model", "eval")
    return linear_model.LogisticRegression(max_iter=1000, C=C, random_state=seed, class_weight=class_weight)


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


def fit_proba(train_x: np.ndarray, train_y: Sequence[str], x: np.ndarray, labels: Sequence[str], seed: int,
              class_weight: str | None = None, C: float = 1.0) -> np.ndarray:  # noqa: N803
    """Train on (train_x, train_y), predict x. Needs at least two classes in train_y.

    `class_weight="balanced"` is for unequal classes (the critic's few real rows against many synthetic).
    `C` is sklearn's inverse regularisation: at 1.0 a probe trained on a few dozen unit vectors gives
    probabilities squashed towards 1/L (0.45-0.59 for 8 rows per label), so absolute thresholds need more.
    """
    model = _probe(seed, class_weight, C).fit(train_x, list(train_y))
    return _proba(model, x, labels)


def crossfit_proba(x: np.ndarray, y: Sequence[str], labels: Sequence[str], seed: int, folds: int = 5,
                   class_weight: str | None = None, C: float = 1.0,  # noqa: N803
                   anchor_x: np.ndarray | None = None, anchor_y: Sequence[str] = ()) -> np.ndarray:
    """Out-of-fold probabilities: no row is scored by a model that saw it.

    `anchor_x`/`anchor_y` (the user's real rows) join the training set of every fold and are never
    scored. Returns uniform probabilities when there is too little data to fit (fewer than two labels,
    or a label with fewer rows than folds) rather than failing.
    """
    model_selection = require("sklearn.model_selection", "eval")
    y = np.asarray(list(y))
    out = np.full((len(x), len(labels)), 1.0 / max(len(labels), 1))
    classes, counts = np.unique(y, return_counts=True) if len(y) else (np.array([]), np.array([]))
    k = min(folds, int(counts.min()) if len(counts) else 0)
    if len(set(classes) | set(anchor_y)) < 2 or k < 2:
        return out
    splitter = model_selection.StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    anchored = anchor_x is not None and len(anchor_x) > 0
    for train_idx, test_idx in splitter.split(x, y):
        train_x, train_y = x[train_idx], y[train_idx]
        if anchored:
            train_x, train_y = np.vstack([train_x, anchor_x]), np.concatenate([train_y, np.asarray(list(anchor_y))])
        out[test_idx] = fit_proba(train_x, train_y, x[test_idx], labels, seed, class_weight, C)
    return out
