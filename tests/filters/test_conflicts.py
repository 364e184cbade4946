"""conflicts: one text under two labels is found (exactly or nearly) and dropped or resolved by a probe."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError

import factory.filters.conflicts as conflicts
from factory.embeddings import Embedder
from factory.filters.base import FilterContext
from factory.filters.conflicts import Conflicts, ConflictsParams
from factory.records import Record

LABELS = ("negative", "neutral", "positive")


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


def make(embedder: Embedder, real_train: list[Record] | None = None, **params: object) -> Conflicts:
    context = FilterContext(seed=0, labels=LABELS, embedder=embedder, real_train=real_train or [])
    return Conflicts(ConflictsParams(**params)).fit(context)


def rows(*pairs: tuple[str | None, str]) -> list[Record]:
    return [Record({"text": t}, label, id=f"r{i}") for i, (label, t) in enumerate(pairs)]


def test_exact_and_near_copies_across_labels_are_dropped(embedder: Embedder) -> None:
    records = rows(
        ("neutral", "Your order has shipped and will arrive on Monday."),
        ("positive", "Your order has shipped and will arrive Monday."),  # near copy (cosine ~0.99)
        ("neutral", "Thanks, the kettle works."),
        ("positive", "thanks — the KETTLE works!"),  # exact after normalisation
        ("negative", "The lamp broke after two days."),
        ("negative", "The lamp broke after only two days."),  # same label: not a conflict
    )
    result = make(embedder).apply(records)
    assert [r.id for r in result.kept] == ["r4", "r5"]
    assert {d.reason for d in result.dropped} == {"label_conflict"}
    detail = {d.id: d.detail for d in result.dropped}
    assert detail["r0"].startswith("cosine 0.9") and "row r1 labelled 'positive'" in detail["r0"]
    assert detail["r3"].startswith("same text as row r2 labelled 'neutral'")
    assert result.stats == {"groups": 2, "rows_in_conflict": 4, "confused_pairs": {"neutral|positive": 2}}
    json.dumps(result.stats)
    # Exact copies only: the near copy survives.
    exact = make(embedder, threshold=None).apply(records)
    assert [r.id for r in exact.kept] == ["r0", "r1", "r4", "r5"]


def test_groups_join_through_shared_neighbours_and_pairs_are_counted(embedder: Embedder) -> None:
    records = rows(
        ("neutral", "Please hold while I transfer your call."),
        ("positive", "Please hold while I transfer your call."),
        ("negative", "Please hold on while I transfer your call."),
        ("neutral", "The store opens at nine."),
        ("negative", "The store opens at nine."),
    )
    result = make(embedder).apply(records)
    assert result.kept == []
    assert result.stats["groups"] == 2
    assert result.stats["confused_pairs"] == {"negative|neutral": 2, "negative|positive": 1, "neutral|positive": 1}
    assert list(result.stats["confused_pairs"]) == sorted(result.stats["confused_pairs"])
    assert "group of 3 rows, labels: negative, neutral, positive" in result.dropped[0].detail


def test_classifier_keeps_the_label_real_rows_support(embedder: Embedder) -> None:
    real = rows(
        ("positive", "I love this kettle, it works perfectly."), ("positive", "Fantastic lamp, bright and beautiful."),
        ("positive", "Great chair, very comfortable and sturdy."), ("negative", "Terrible kettle, it leaks everywhere."),
        ("negative", "The lamp broke after a day, awful."), ("negative", "Worst chair ever, it wobbles and creaks."),
    )
    records = rows(
        ("positive", "This kettle is wonderful, I love it!"),
        ("negative", "This kettle is wonderful, I love it!"),
        ("negative", "Awful lamp, it broke immediately."),
        ("positive", "Awful lamp, it broke immediately!"),
        ("neutral", "The chair comes in three colours."),
    )
    result = make(embedder, real, resolve="classifier").apply(records)
    assert [r.id for r in result.kept] == ["r0", "r2", "r4"]
    assert result.stats["probe"] == "real_train"
    detail = {d.id: d.detail for d in result.dropped}
    assert "labelled 'positive'" in detail["r1"] and "the classifier favours 'positive'" in detail["r1"]
    assert "p(negative)=" in detail["r1"] and "p(positive)=" in detail["r1"]
    assert "favours 'negative'" in detail["r3"]


def test_classifier_without_real_rows_cross_fits_on_the_synthetic_rows(embedder: Embedder) -> None:
    positive = ["I love this kettle, it works perfectly.", "Fantastic lamp, bright and beautiful.",
                "Great chair, very comfortable and sturdy.", "Wonderful service, the parcel came early.",
                "Brilliant blender, smoothies in seconds."]
    negative = ["Terrible kettle, it leaks everywhere.", "The lamp broke after a day, awful.",
                "Worst chair ever, it wobbles and creaks.", "Dreadful service, the parcel never came.",
                "Useless blender, the motor burnt out."]
    records = rows(*[("positive", t) for t in positive], *[("negative", t) for t in negative],
                   ("positive", "What a lovely, excellent kettle!"), ("negative", "What a lovely, excellent kettle!"))
    result = make(embedder, resolve="classifier").apply(records)
    assert result.stats["probe"] == "crossfit"
    assert [d.id for d in result.dropped] == ["r11"]
    assert "favours 'positive'" in result.dropped[0].detail


def test_classifier_tie_drops_the_whole_group(embedder: Embedder) -> None:
    # Two rows are too few to cross-fit: the probabilities are uniform and cannot pick a side.
    records = rows(("neutral", "Same words, two labels."), ("positive", "Same words, two labels."))
    result = make(embedder, resolve="classifier").apply(records)
    assert result.kept == []
    assert all("cannot tell the labels apart" in d.detail for d in result.dropped)


def test_edge_cases(embedder: Embedder) -> None:
    f = make(embedder)
    empty = f.apply([])
    assert empty.kept == [] and empty.stats["confused_pairs"] == {}
    single = rows(("neutral", "Just one row."))
    assert f.apply(single).kept == single
    same_label = rows(*[("neutral", "All the same.")] * 5)
    assert f.apply(same_label).kept == same_label  # duplicates, but not a conflict
    everywhere = rows(*[("neutral", "All the same.")] * 4, *[("positive", "All the same.")] * 4)
    result = f.apply(everywhere)
    assert result.kept == [] and result.stats["groups"] == 1 and result.stats["rows_in_conflict"] == 8
    unlabelled = [Record({"text": "All the same."}, id="u1"), Record({"text": "All the same."}, id="u2")]
    assert f.apply(unlabelled + everywhere[:1]).kept == unlabelled + everywhere[:1]  # no label: nothing to conflict
    emoji = rows(("positive", "Love it 😍🔥 — très bien!"), ("negative", "love it 😍🔥 très bien"),
                 ("neutral", "ありがとうございます。"), ("positive", "ありがとうございます"))
    assert f.apply(emoji).kept == []
    very_long = "The parcel is late again. " * 400
    assert f.apply(rows(("neutral", very_long), ("positive", very_long + "!"))).kept == []


def test_components_work_block_by_block(monkeypatch: pytest.MonkeyPatch) -> None:
    # Many identical vectors under two labels exercise the per-block spanning-forest reduction.
    monkeypatch.setattr(conflicts, "BLOCK", 8)
    x = np.zeros((120, 4), dtype=np.float32)
    x[:80, 0] = 1.0
    x[80:, 1] = 1.0
    label = np.array([0, 1] * 40 + [0] * 40)
    component = conflicts._components(x, label, 0.95)
    assert len(set(component[:80])) == 1
    assert len(set(component[80:])) == 40  # same vectors, same label: never linked
    assert component[0] not in set(component[80:])


def test_params_are_validated() -> None:
    with pytest.raises(ValidationError):
        ConflictsParams(resolve="vote")
    with pytest.raises(ValidationError):
        ConflictsParams(threshold=0)
    assert ConflictsParams().resolve == "drop_all" and ConflictsParams().threshold == 0.95
