"""confidence: a classifier trained on real rows (or cross-fitted) must support each row's label."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from factory.embeddings import Embedder
from factory.filters.base import FilterContext
from factory.filters.confidence import Confidence, ConfidenceParams
from factory.records import Record

POLITE = [
    "Could you please help me with my order? Thank you so much.",
    "Thank you kindly for your patience with me.",
    "Would you mind checking my account, please?",
    "I really appreciate your help today.",
    "Please let me know if there's anything else, thanks!",
    "Many thanks for sorting this out so quickly.",
]
RUDE = [
    "Fix my order now, this is ridiculous.",
    "You people are completely useless.",
    "I want my money back immediately, idiots.",
    "Stop wasting my time and do your job.",
    "This service is garbage.",
    "Answer me already, I've waited forever.",
]
LABELS = ("polite", "rude")


def real_rows() -> list[Record]:
    return ([Record({"text": t}, "polite", id=f"real-p{i}") for i, t in enumerate(POLITE)]
            + [Record({"text": t}, "rude", id=f"real-r{i}") for i, t in enumerate(RUDE)])


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


@pytest.fixture()
def real_context(embedder: Embedder) -> FilterContext:
    return FilterContext(seed=0, labels=LABELS, real_train=real_rows(), embedder=embedder)


SYNTHETIC = [
    Record({"text": "Thanks a lot for your help, have a lovely day!"}, "polite", id="ok-polite"),
    Record({"text": "Get lost, you morons, refund me now!"}, "polite", id="wrong-polite"),
    Record({"text": "Your support is a joke, fix it."}, "rude", id="ok-rude"),
    Record({"text": "Please, could you kindly look into this? Many thanks!"}, "rude", id="wrong-rude"),
]


def test_keeps_supported_rows_and_drops_contradicted_ones(real_context: FilterContext) -> None:
    result = Confidence(ConfidenceParams()).fit(real_context).apply(SYNTHETIC)
    assert [r.id for r in result.kept] == ["ok-polite", "ok-rude"]
    assert [(d.id, d.reason, d.stage) for d in result.dropped] == [
        ("wrong-polite", "low_confidence", "confidence"), ("wrong-rude", "low_confidence", "confidence")]
    assert re.fullmatch(r"p\(polite\)=0\.\d\d < 0\.5; classifier prefers rude \(0\.\d\d\)", result.dropped[0].detail)
    # Every row carries its score: kept rows in meta, dropped rows in the rejected row's meta.
    assert all(r.meta["confidence"] >= 0.5 for r in result.kept)
    assert all(d.meta["confidence"] < 0.5 for d in result.dropped)
    assert all("confidence" not in r.meta for r in SYNTHETIC), "the input rows are not modified"
    assert result.stats | {"mean_confidence": 0} == {
        "classifier": "linear", "trained_on": "real+synthetic (cross-fit)", "train_rows": 16, "folds": 2,
        "scored": 4, "unscored": 0, "mean_confidence": 0}
    # The real rows alone reach the same verdict here, with another probe.
    alone = Confidence(ConfidenceParams(train_on="real")).fit(real_context).apply(SYNTHETIC)
    assert [r.id for r in alone.kept] == ["ok-polite", "ok-rude"]
    assert alone.stats["trained_on"] == "real" and alone.stats["train_rows"] == 12


def test_synthetic_rows_correct_a_probe_that_few_real_rows_bias(embedder: Embedder) -> None:
    # One real row per label: a probe on those alone is unsure of every row; the synthetic folds firm it up.
    few_real = [Record({"text": POLITE[0]}, "polite", id="rp"), Record({"text": RUDE[0]}, "rude", id="rr")]
    context = FilterContext(seed=0, labels=LABELS, real_train=few_real, embedder=embedder)
    synthetic = ([Record({"text": t}, "polite", id=f"p{i}") for i, t in enumerate(POLITE[1:])]
                 + [Record({"text": t}, "rude", id=f"r{i}") for i, t in enumerate(RUDE[1:])])
    both = Confidence(ConfidenceParams()).fit(context).apply(synthetic)
    alone = Confidence(ConfidenceParams(train_on="real")).fit(context).apply(synthetic)
    assert both.stats["trained_on"] == "real+synthetic (cross-fit)" and both.stats["train_rows"] == 12
    assert alone.stats["trained_on"] == "real" and alone.stats["train_rows"] == 2
    assert both.stats["mean_confidence"] > alone.stats["mean_confidence"]


def test_min_prob_sets_the_bar(real_context: FilterContext) -> None:
    scores = [r.meta["confidence"] for r in Confidence(ConfidenceParams(min_prob=0.0)).fit(real_context).apply(SYNTHETIC).kept]
    assert len(scores) == 4
    bar = sorted(scores)[-1]  # only the best-supported row clears it
    strict = Confidence(ConfidenceParams(min_prob=bar)).fit(real_context).apply(SYNTHETIC)
    assert len(strict.kept) == 1 and strict.kept[0].meta["confidence"] == bar


def test_crossfits_on_synthetic_rows_without_real_rows(embedder: Embedder) -> None:
    records = real_rows() + SYNTHETIC  # here all of them are "synthetic": nothing real to train on
    context = FilterContext(seed=0, labels=LABELS, embedder=embedder)
    result = Confidence(ConfidenceParams()).fit(context).apply(records)
    assert result.stats["trained_on"] == "synthetic (cross-fit)"
    assert result.stats["train_rows"] == 16 and result.stats["folds"] == 5
    assert {"wrong-polite", "wrong-rude"} <= {d.id for d in result.dropped}
    assert {"ok-polite", "ok-rude"} <= {r.id for r in result.kept}
    # Deterministic for the seed, and the kept rows keep input order.
    again = Confidence(ConfidenceParams()).fit(context).apply(records)
    assert [r.id for r in again.kept] == [r.id for r in result.kept]
    assert [r.id for r in result.kept] == [r.id for r in records if r.id in {k.id for k in result.kept}]


def test_real_rows_of_one_label_are_not_enough(embedder: Embedder) -> None:
    context = FilterContext(seed=0, labels=LABELS, real_train=real_rows()[:6], embedder=embedder)
    result = Confidence(ConfidenceParams()).fit(context).apply(real_rows() + SYNTHETIC)
    assert result.stats["trained_on"] == "synthetic (cross-fit)"


def test_label_without_real_rows_passes_through_unscored(real_context: FilterContext) -> None:
    records = [*SYNTHETIC, Record({"text": "Where is the nearest store?"}, "neutral", id="n"),
               Record({"text": "No label at all"}, id="none")]
    result = Confidence(ConfidenceParams()).fit(real_context).apply(records)
    kept = {r.id: r for r in result.kept}
    assert "confidence" not in kept["n"].meta and "confidence" not in kept["none"].meta
    assert result.stats["unscored_labels"] == {"(none)": 1, "neutral": 1}
    assert [r.id for r in result.kept] == ["ok-polite", "ok-rude", "n", "none"]


def test_edge_cases(real_context: FilterContext, embedder: Embedder) -> None:
    crossfit = Confidence(ConfidenceParams()).fit(FilterContext(seed=0, labels=LABELS, embedder=embedder))
    real = Confidence(ConfidenceParams()).fit(real_context)
    for stage in (crossfit, real):
        empty = stage.apply([])
        assert empty.kept == [] and empty.dropped == [] and empty.stats["scored"] == 0
    # A single row, or identical rows of one label: nothing to cross-fit on, so everything passes.
    single = crossfit.apply([Record({"text": "Thanks!"}, "polite", id="x")])
    assert len(single.kept) == 1 and "skipped" in single.stats
    same = crossfit.apply([Record({"text": "Thanks!"}, "polite", id=f"x{i}") for i in range(5)])
    assert len(same.kept) == 5 and not same.dropped
    # With real rows, one row is scored like any other: too few to cross-fit, so the real rows alone score it.
    one = real.apply([Record({"text": "Thank you so much 🙏😊, you are wonderful!"}, "polite", id="emoji")])
    assert one.kept[0].id == "emoji" and one.stats["trained_on"] == "real"
    long_polite = "Dear team, thank you so much for your kind help, I truly appreciate it. " * 400
    odd = [
        Record({"text": long_polite}, "polite", id="long"),
        Record({"text": "Thank you so much for the café voucher, très kind of you — merci! 💐"}, "polite", id="fr"),
        Record({"text": "😡😡😡 useless!!! 💩"}, "rude", id="angry-emoji"),
    ]
    result = real.apply(odd)
    assert [r.id for r in result.kept] == ["long", "fr", "angry-emoji"]
    assert all(math.isfinite(r.meta["confidence"]) for r in result.kept)


def test_params_are_validated() -> None:
    assert ConfidenceParams().min_prob == 0.5 and ConfidenceParams().classifier == "linear"
    for bad in ({"min_prob": 1.5}, {"classifier": "svm"}, {"setfit_iterations": 0}, {"C": 0}, {"colour": "red"}):
        with pytest.raises(ValidationError):
            ConfidenceParams(**bad)


def test_setfit_classifier_trains_offline_without_writing_checkpoints(
    embedder: Embedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    real = [Record({"text": t}, "polite", id=f"p{i}") for i, t in enumerate(POLITE[:4])] + [
        Record({"text": t}, "rude", id=f"r{i}") for i, t in enumerate(RUDE[:4])]
    context = FilterContext(seed=0, labels=LABELS, real_train=real, embedder=embedder)
    params = ConfidenceParams(classifier="setfit", setfit_iterations=1, setfit_max_length=32)
    result = Confidence(params).fit(context).apply(SYNTHETIC)
    assert result.stats["classifier"] == "setfit" and result.stats["train_rows"] == 8
    assert [r.id for r in result.kept] == ["ok-polite", "ok-rude"]
    assert {d.id for d in result.dropped} == {"wrong-polite", "wrong-rude"}
    assert list(tmp_path.iterdir()) == [], "SetFit wrote into the working directory"
