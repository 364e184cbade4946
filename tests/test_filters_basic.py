"""exact_dedup and novelty: what they keep, what they drop and why."""

from __future__ import annotations

from factory.filters import FILTERS, build_filter
from factory.filters.exact import ExactDedupParams
from factory.filters.novelty import NoveltyParams
from factory.records import Record


def rows(*texts: str, label: str = "a") -> list[Record]:
    return [Record({"text": t}, label, id=f"r{i}") for i, t in enumerate(texts)]


def test_exact_dedup_normalises_case_space_punctuation_unicode() -> None:
    records = rows("Great film!", "great   FILM", "Ｇｒｅａｔ film.", "Great films", "")
    result = build_filter(ExactDedupParams()).apply(records)
    assert [r.id for r in result.kept] == ["r0", "r3", "r4"]
    assert [(d.id, d.reason) for d in result.dropped] == [("r1", "exact_duplicate"), ("r2", "exact_duplicate")]
    assert "r0" in result.dropped[0].detail
    assert result.funnel("exact_dedup", 5)["dropped"] == {"exact_duplicate": 2}


def test_exact_dedup_across_or_within_labels() -> None:
    records = rows("same text") + [Record({"text": "Same text"}, "b", id="x")]
    assert len(build_filter(ExactDedupParams()).apply(records).kept) == 1
    assert len(build_filter(ExactDedupParams(per_label=True)).apply(records).kept) == 2


def test_exact_dedup_edge_cases() -> None:
    dedup = build_filter(ExactDedupParams())
    assert dedup.apply([]).kept == []
    assert len(dedup.apply(rows("😀 emoji ok")).kept) == 1
    assert len(dedup.apply(rows(*["same"] * 50)).kept) == 1


def test_novelty_drops_rouge_l_above_threshold() -> None:
    records = rows(
        "Write a product description for the blue ceramic kettle.",
        "Write a product description for the blue ceramic kettle please.",
        "Summarise the history of the Roman empire in three sentences.",
    )
    result = build_filter(NoveltyParams()).apply(records)
    assert [r.id for r in result.kept] == ["r0", "r2"]
    assert result.dropped[0].reason == "not_novel" and "ROUGE-L" in result.dropped[0].detail


def test_registry_names_every_filter() -> None:
    assert {"exact_dedup", "novelty"} <= set(FILTERS)
