"""leakage: synthetic copies of real train or holdout rows go, without the real text leaving the user;
and the whole semantic chain embeds each text once."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from factory.embeddings import Embedder
from factory.filters.base import Filter, FilterContext
from factory.filters.conflicts import Conflicts, ConflictsParams
from factory.filters.leakage import Leakage, LeakageParams
from factory.filters.quality import Quality, QualityParams
from factory.filters.semantic import SemanticDedup, SemanticDedupParams
from factory.records import Record

TRAIN = [
    Record({"text": "The delivery driver left my parcel at the wrong house again."}, "negative", id="t1"),
    Record({"text": "Could you please tell me when my refund will be processed?"}, "neutral", id="t2"),
    Record({"text": "Absolutely love the new blender, it crushes ice like a dream and cleans up in seconds."}, "positive", id="t3"),
]
HOLDOUT = [
    Record({"text": "The store opens at nine in the morning on weekdays."}, "neutral", id="h1"),
    Record({"text": "Worst customer service I have ever had, nobody answered for a week."}, "negative", id="h2"),
]


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


def make(embedder: Embedder, train: list[Record] = TRAIN, holdout: list[Record] = HOLDOUT, **params: object) -> Leakage:
    context = FilterContext(seed=0, labels=("negative", "neutral", "positive"), embedder=embedder,
                            real_train=train, real_holdout=holdout)
    return Leakage(LeakageParams(**params)).fit(context)


def rows(*texts: str) -> list[Record]:
    return [Record({"text": t}, "neutral", id=f"s{i}") for i, t in enumerate(texts)]


def test_copies_of_train_and_holdout_rows_are_dropped(embedder: Embedder) -> None:
    records = rows(
        "The delivery driver left my parcel at the wrong house again!",  # verbatim train copy
        "The store opens at nine in the morning on weekdays, see you then.",  # holdout copy plus a tail
        "Can you please let me know when my refund is going to be processed?",  # paraphrase: cosine only
        "Please hold while I transfer your call.",  # unrelated
        "it crushes ice like a dream",  # a fragment of a longer real row: n-grams only
    )
    result = make(embedder).apply(records)
    assert [r.id for r in result.kept] == ["s3"]
    detail = {d.id: d.detail for d in result.dropped}
    assert {d.reason for d in result.dropped} == {"leakage"}
    assert detail["s0"].startswith("near copy of real train row t1 (3-gram containment 1.00, cosine")
    assert detail["s1"].startswith("near copy of real holdout row h1 (3-gram containment 0.73")
    assert detail["s2"].startswith("near copy of real train row t2 (cosine 0.9")
    assert detail["s4"].startswith("near copy of real train row t3 (3-gram containment 1.00")
    assert result.stats == {"real_rows": {"train": 3, "holdout": 2}, "checked": True,
                            "leaked": {"train": 3, "holdout": 1}}
    json.dumps(result.stats)


def test_real_text_never_reaches_the_rejected_rows(embedder: Embedder) -> None:
    records = rows(*(r.text for r in TRAIN + HOLDOUT))
    result = make(embedder).apply(records)
    assert len(result.dropped) == 5
    dumped = json.dumps([d.to_json() for d in result.dropped]) + json.dumps(result.stats)
    for real in TRAIN + HOLDOUT:
        assert real.text not in dumped
    assert "wrong house" not in dumped and "refund" not in dumped
    assert all(d.text == "" and "redacted" in d.meta for d in result.dropped)
    assert [d.detail.split(" (")[0] for d in result.dropped] == [
        "near copy of real train row t1", "near copy of real train row t2", "near copy of real train row t3",
        "near copy of real holdout row h1", "near copy of real holdout row h2"]
    # Opting out keeps the synthetic text (for inspection), still never the real row in the detail.
    kept_text = make(embedder, redact=False).apply(records[:1]).dropped[0]
    assert kept_text.text == TRAIN[0].text and TRAIN[0].text not in kept_text.detail


def test_each_check_alone_and_the_metrics(embedder: Embedder) -> None:
    records = rows("Can you please let me know when my refund is going to be processed?", "it crushes ice like a dream")
    grams_only = make(embedder, threshold=None).apply(records)
    assert [r.id for r in grams_only.kept] == ["s0"]
    cosine_only = make(embedder, ngram_threshold=None).apply(records)
    assert [r.id for r in cosine_only.kept] == ["s1"]
    # Jaccard only counts whole-row copies: a fragment of a long real row passes.
    jaccard = make(embedder, threshold=None, ngram_metric="jaccard").apply(records)
    assert [r.id for r in jaccard.kept] == ["s0", "s1"]
    # Shorter than n words: the whole (normalised) text is one gram, so an exact copy still matches.
    short = make(embedder, [Record({"text": "Loved it!"}, id="t9")], [], threshold=None).apply(rows("loved it", "hated it"))
    assert [r.id for r in short.kept] == ["s1"]
    with pytest.raises(ValidationError, match="would check nothing"):
        LeakageParams(threshold=None, ngram_threshold=None, source_span=None)
    LeakageParams(threshold=None, ngram_threshold=None)  # the source span check alone (grounded recipes)
    with pytest.raises(ValidationError):
        LeakageParams(ngram=0)


def test_no_real_rows_passes_everything_and_says_so(embedder: Embedder) -> None:
    records = rows("Anything at all.", "Anything at all.")
    result = make(embedder, [], []).apply(records)
    assert result.kept == records and result.dropped == []
    assert result.stats["checked"] is False and "no real rows" in result.stats["note"]
    # Without fit it behaves the same instead of failing.
    assert Leakage(LeakageParams()).apply(records).kept == records


def test_edge_cases(embedder: Embedder) -> None:
    f = make(embedder)
    assert f.apply([]).kept == []
    assert [r.id for r in f.apply(rows("A single unrelated row about kettles.")).kept] == ["s0"]
    copies = f.apply(rows(*[TRAIN[0].text] * 4))
    assert copies.kept == [] and copies.stats["leaked"] == {"train": 4, "holdout": 0}
    emoji = make(embedder, [Record({"text": "Merci beaucoup 🙏😊 für alles!"}, id="e1")], []).apply(
        rows("merci beaucoup 🙏😊 für alles", "ありがとうございます。"))
    assert [r.id for r in emoji.kept] == ["s1"]
    very_long = rows("The parcel is late again and nobody answers the phone. " * 300)
    assert len(f.apply(very_long).kept) == 1
    unnamed = make(embedder, [], [Record({"text": "An anonymous holdout row about lamps."})], threshold=None)
    assert unnamed.apply(rows("An anonymous holdout row about lamps.")).dropped[0].detail.startswith(
        "near copy of real holdout row #0")


def test_chain_embeds_each_text_once(embedder: Embedder) -> None:
    shared = Embedder()
    shared.model_ = embedder.model_  # reuse the loaded weights; the memo and counter start empty
    context = FilterContext(seed=0, labels=("negative", "neutral", "positive"), embedder=shared,
                            real_train=TRAIN, real_holdout=HOLDOUT)
    chain: list[Filter] = [
        Quality(QualityParams(min_words=3)),
        SemanticDedup(SemanticDedupParams()),
        Conflicts(ConflictsParams(resolve="classifier")),
        Leakage(LeakageParams()),
    ]
    for f in chain:
        f.fit(context)
    records = [
        Record({"text": "The blue kettle boils water in two minutes."}, "neutral", id="a"),
        Record({"text": "The blue kettle boils water in two minutes!"}, "positive", id="b"),
        Record({"text": "I absolutely adore this lamp, it lights the whole room."}, "positive", id="c"),
        Record({"text": "I absolutely adore this lamp; it lights up the whole room."}, "positive", id="d"),
        Record({"text": "Sorry."}, "negative", id="e"),  # dropped by quality: never embedded
        Record({"text": "I'm sorry, but I can't assist with that."}, "negative", id="f"),  # likewise
        Record({"text": "The delivery driver left my parcel at the wrong house again."}, "negative", id="g"),
        Record({"text": "The chair wobbles and creaks every time I sit down."}, "negative", id="h"),
    ]
    rows_in = records
    dropped: dict[str, list[str]] = {}
    for f in chain:
        result = f.apply(rows_in)
        dropped[f.type] = [d.id for d in result.dropped]
        rows_in = result.kept
    after_quality = [r for r in records if r.id not in ("e", "f")]
    distinct = {r.text for r in after_quality} | {r.text for r in TRAIN + HOLDOUT}
    assert shared.encoded == len(distinct)
    assert dropped["quality"] == ["e", "f"] and dropped["semantic_dedup"] == ["d"] and dropped["leakage"] == ["g"]
    assert len(dropped["conflicts"]) == 1 and dropped["conflicts"][0] in ("a", "b")  # the probe picks one side
    assert [r.id for r in rows_in if r.id not in ("a", "b")] == ["c", "h"] and len(rows_in) == 3
    # A second pass (the pipeline re-applies the chain every round) embeds nothing new.
    again = records
    for f in chain:
        again = f.apply(again).kept
    assert again == rows_in
    assert shared.encoded == len(distinct)
