"""semantic_dedup with the packaged MiniLM: paraphrases go, distinct rows stay, memory stays blockwise."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

import factory.filters.semantic as semantic
from factory.embeddings import Embedder
from factory.filters.base import FilterContext
from factory.filters.semantic import SemanticDedup, SemanticDedupParams, best_match, greedy_dedup
from factory.records import Record


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


def dedup(embedder: Embedder, **params: object) -> SemanticDedup:
    context = FilterContext(labels=("neutral", "polite", "unused"), embedder=embedder)
    return SemanticDedup(SemanticDedupParams(**params)).fit(context)


def rows(*pairs: tuple[str, str]) -> list[Record]:
    return [Record({"text": t}, label, id=f"r{i}") for i, (label, t) in enumerate(pairs)]


def test_drops_paraphrases_of_kept_rows(embedder: Embedder) -> None:
    records = rows(
        ("polite", "Could you please tell me when my refund will be processed?"),
        ("polite", "Can you please let me know when my refund is going to be processed?"),
        ("polite", "Please hold while I transfer your call."),
        ("polite", "Please hold on while I transfer your call."),
        ("polite", "Kindly wait a moment while I put you through to a colleague."),
        ("polite", "Thank you so much for your help today!"),
    )
    result = dedup(embedder).apply(records)
    assert [r.id for r in result.kept] == ["r0", "r2", "r4", "r5"]
    assert [(d.id, d.reason) for d in result.dropped] == [("r1", "semantic_duplicate"), ("r3", "semantic_duplicate")]
    detail = result.dropped[0].detail
    assert "kept row r0" in detail and "cosine 0.9" in detail
    # A stricter threshold keeps everything but the near-verbatim pair.
    assert [d.id for d in dedup(embedder, threshold=0.975).apply(records).dropped] == []
    assert [d.id for d in dedup(embedder, threshold=0.972).apply(records).dropped] == ["r3"]


def test_scope_label_or_all(embedder: Embedder) -> None:
    records = rows(("neutral", "Your order has shipped and will arrive on Monday."),
                   ("polite", "Your order has shipped and will arrive Monday."),
                   ("neutral", "Your order shipped and will arrive Monday."))
    by_label = dedup(embedder).apply(records)
    assert [r.id for r in by_label.kept] == ["r0", "r1"]  # cross-label copies are the conflicts filter's job
    across = dedup(embedder, scope="all").apply(records)
    assert [r.id for r in across.kept] == ["r0"]
    assert all("kept row r0" in d.detail for d in across.dropped)


def test_edge_cases(embedder: Embedder) -> None:
    f = dedup(embedder)
    assert f.apply([]).kept == [] and f.apply([]).dropped == []
    single = rows(("neutral", "Only one row here."))
    assert f.apply(single).kept == single
    same = rows(*[("neutral", "Identical text.")] * 6, *[("polite", "Identical text.")] * 3)
    result = f.apply(same)
    assert [r.id for r in result.kept] == ["r0", "r6"]  # one per label; 'unused' has no rows and is no problem
    assert all(d.detail.endswith("kept row r0") or d.detail.endswith("kept row r6") for d in result.dropped)
    emoji = rows(("polite", "Thank you so much!! 🙏😊"), ("polite", "Vielen Dank für Ihre Geduld — größte Freude."),
                 ("polite", "ありがとうございます。"), ("polite", "Thank you so much!! 🙏😊 "))
    assert [r.id for r in f.apply(emoji).kept] == ["r0", "r1", "r2"]
    long_rows = rows(("neutral", "The parcel is late. " * 500), ("neutral", "A completely different sentence."))
    assert len(f.apply(long_rows).kept) == 2
    unlabelled = [Record({"text": "Same instruction."}, id="a"), Record({"text": "Same instruction."}, id="b")]
    assert [r.id for r in f.apply(unlabelled).kept] == ["a"]


def test_each_text_is_embedded_once_and_results_are_stable(embedder: Embedder) -> None:
    records = rows(("neutral", "A brand new sentence for the memo test."), ("neutral", "Another fresh one, not seen before."))
    f = dedup(embedder)
    first = f.apply(records)
    before = embedder.encoded
    second = f.apply(records)
    assert embedder.encoded == before  # the shared memo answered
    assert [r.id for r in first.kept] == [r.id for r in second.kept]


def test_greedy_matches_brute_force_across_block_boundaries(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((40, 16)).astype(np.float32)
    x = centres[rng.integers(0, 40, 300)] + 0.15 * rng.standard_normal((300, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)

    def brute(x: np.ndarray, threshold: float) -> dict[int, int]:
        kept: list[int] = []
        out: dict[int, int] = {}
        for i in range(len(x)):
            sims = x[kept] @ x[i] if kept else np.zeros(0)
            if len(sims) and sims.max() > threshold:
                out[i] = kept[int(sims.argmax())]
            else:
                kept.append(i)
        return out

    expected = brute(x, 0.9)
    assert 50 < len(expected) < 290  # the data has both kinds of rows
    for block in (7, 64, 1024):
        monkeypatch.setattr(semantic, "BLOCK", block)
        got = greedy_dedup(x.copy(), 0.9)
        assert {i: other for i, (other, _) in got.items()} == expected
        best, arg = best_match(x[:50], x[50:])
        full = x[:50] @ x[50:].T
        assert np.allclose(best, full.max(axis=1), atol=1e-5) and (arg == full.argmax(axis=1) + 0).all()
    best, arg = best_match(x[:3], x[:0])
    assert (arg == -1).all() and np.isneginf(best).all()


def test_params_are_validated() -> None:
    with pytest.raises(ValidationError):
        SemanticDedupParams(threshold=1.5)
    with pytest.raises(ValidationError):
        SemanticDedupParams(scope="label_and_generator")
    assert SemanticDedupParams().threshold == 0.92 and SemanticDedupParams().scope == "label"
