"""eval.metrics: per-label and macro-F1 (scikit-learn's) against counts written out, zero-division included."""

from __future__ import annotations

import random
import warnings

import numpy as np
import pytest

from factory.eval.metrics import bootstrap_macro_f1, scores


def counted_f1(predicted: list[str], gold: list[str], labels: list[str]) -> list[float]:
    """F1 per label the slow obvious way: 2 tp / (predicted + true), 0 where a label is neither."""
    out = []
    for label in labels:
        tp = sum(p == g == label for p, g in zip(predicted, gold))
        denominator = predicted.count(label) + gold.count(label)
        out.append(2 * tp / denominator if denominator else 0.0)
    return out


def test_f1_matches_counts_with_absent_and_unknown_labels() -> None:
    rng = random.Random(0)
    for _ in range(300):
        labels = rng.sample(["a", "b", "c", "d", ""], rng.randint(1, 5))
        pool = [*labels, "outside"]  # a prediction or gold value that is no label counts for none
        rows = rng.choice([1, 2, 7, 40])
        gold, predicted = [rng.choice(pool) for _ in range(rows)], [rng.choice(pool) for _ in range(rows)]
        expected = counted_f1(predicted, gold, labels)
        got = scores(predicted, gold, labels)
        assert list(got["per_label_f1"].values()) == expected
        assert got["macro_f1"] == float(np.mean(expected))
        assert got["accuracy"] == pytest.approx(np.mean([p == g for p, g in zip(predicted, gold)]))


def test_labels_nobody_predicts_or_holds_score_zero_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = scores(["a", "a"], ["a", "b"], ["a", "b", "c"])
    assert got["per_label_f1"] == {"a": pytest.approx(2 / 3), "b": 0.0, "c": 0.0}
    assert got["macro_f1"] == pytest.approx((2 / 3) / 3)
    assert scores([], [], ["a", "b"]) == {"accuracy": 0.0, "macro_f1": 0.0, "per_label_f1": {"a": 0.0, "b": 0.0}}
    assert scores(["a"], ["a"], []) == {"accuracy": 1.0, "macro_f1": 0.0, "per_label_f1": {}}


def test_bootstrap_with_unit_weights_is_the_plain_score() -> None:
    rng = random.Random(1)
    labels = ["x", "y", "z"]
    gold = [rng.choice(labels) for _ in range(50)]
    runs = [[rng.choice(labels) for _ in range(50)] for _ in range(2)]
    out = bootstrap_macro_f1(runs, gold, labels, np.ones((1, 50)))
    assert out[0].tolist() == pytest.approx([scores(r, gold, labels)["macro_f1"] for r in runs], abs=1e-15)
