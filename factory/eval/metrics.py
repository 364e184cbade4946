"""Scores on validation rows: accuracy, macro-F1, per-label F1, and a paired bootstrap for gains."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from factory.errors import require


def _indicators(values: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    index = {label: i for i, label in enumerate(labels)}
    out = np.zeros((len(values), len(labels)), dtype=np.float64)
    for row, value in enumerate(values):
        if value in index:
            out[row, index[value]] = 1.0
    return out


def _f1_from_counts(tp: np.ndarray, predicted: np.ndarray, gold: np.ndarray) -> np.ndarray:
    denominator = predicted + gold
    return np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)


def scores(predicted: Sequence[str], gold: Sequence[str], labels: Sequence[str]) -> dict[str, object]:
    """accuracy, macro_f1 (unweighted mean over `labels`) and per_label_f1.

    F1 is scikit-learn's, per label of `labels` (a prediction outside them counts for no label), 0 for a
    label neither predicted nor true (zero_division=0); macro-F1 is their plain mean, which is what
    f1_score(average="macro") returns (its average is a mean when no score is NaN, and none is here).
    """
    f1_score = require("sklearn.metrics", "eval").f1_score
    f1 = (f1_score(list(gold), list(predicted), labels=list(labels), average=None, zero_division=0)
          if len(gold) and len(labels) else np.zeros(len(labels)))
    accuracy = float(np.mean([a == b for a, b in zip(predicted, gold)])) if gold else 0.0
    return {"accuracy": accuracy, "macro_f1": float(f1.mean()) if len(labels) else 0.0,
            "per_label_f1": {label: float(v) for label, v in zip(labels, f1)}}


def bootstrap_macro_f1(predicted: Sequence[Sequence[str]], gold: Sequence[str], labels: Sequence[str],
                       weights: np.ndarray) -> np.ndarray:
    """Macro-F1 of each prediction run under each bootstrap resample: shape (resamples, runs).

    `weights` is (resamples, rows) counts of how often each validation row is drawn, so every run is
    scored on the same resamples (a paired bootstrap).

    Hand-written on purpose: f1_score(sample_weight=...) would score one resample per call (1000 calls
    per run); weighting the per-label counts scores all resamples in three matrix products.
    """
    g = _indicators(gold, labels)
    out = np.zeros((weights.shape[0], len(predicted)))
    for run, preds in enumerate(predicted):
        p = _indicators(preds, labels)
        tp = weights @ (p * g)
        out[:, run] = _f1_from_counts(tp, weights @ p, weights @ g).mean(axis=1)
    return out


def paired_gain_ci(treatment: Sequence[Sequence[str]], control: Sequence[Sequence[str]], gold: Sequence[str],
                   labels: Sequence[str], *, resamples: int = 1000, seed: int = 0, level: float = 0.95,
                   resample_runs: bool = False) -> dict[str, float]:
    """Mean macro-F1 gain of treatment over control runs (averaged over runs), with a paired bootstrap CI.

    The validation rows are resampled, the same rows for both sides. With `resample_runs`, the runs are resampled
    too, pairwise (run k of the treatment against run k of the control): when each run trained on another draw of
    the real training rows, the interval then holds that uncertainty as well, not only the validation rows'.
    """
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(len(gold), np.full(len(gold), 1 / len(gold)), size=resamples).astype(np.float64)
    differences = bootstrap_macro_f1(treatment, gold, labels, weights) - bootstrap_macro_f1(control, gold, labels, weights)
    if resample_runs and differences.shape[1] > 1:
        picked = rng.integers(0, differences.shape[1], size=differences.shape)
        gains = np.take_along_axis(differences, picked, axis=1).mean(axis=1)
    else:
        gains = differences.mean(axis=1)
    observed = np.mean([scores(t, gold, labels)["macro_f1"] for t in treatment]) - np.mean(
        [scores(c, gold, labels)["macro_f1"] for c in control])
    tail = (1 - level) / 2
    return {"gain": float(observed), "ci_low": float(np.quantile(gains, tail)), "ci_high": float(np.quantile(gains, 1 - tail)),
            "level": level, "resamples": resamples}


def verdict(interval: dict[str, float]) -> str:
    """helped / hurt / within noise: whether a paired interval of a change lies above zero, below it, or spans it."""
    if interval["ci_low"] > 0:
        return "helped"
    return "hurt" if interval["ci_high"] < 0 else "within noise"


def mean_spread(values: Sequence[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=np.float64)
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0,
            "min": float(arr.min()), "max": float(arr.max())}
