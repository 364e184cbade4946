"""weight: every row gets a weight in [0, 1]; SunGen's learned weight finds wrongly labelled rows on its own."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from factory.embeddings import Embedder
from factory.filters.base import FilterContext
from factory.filters.params import WeightParams
from factory.filters.sungen import learned_weights
from factory.filters.weights import Weights
from factory.records import Record

POLITE = [
    "Could you please help me with my order? Thank you so much.", "Thank you kindly for your patience with me.",
    "Would you mind checking my account, please?", "I really appreciate your help today.",
    "Please let me know if there's anything else, thanks!", "Many thanks for sorting this out so quickly.",
    "If it is no trouble, could you resend the invoice? Much obliged.", "Thanks a lot, you have been wonderful.",
    "I would be grateful for any advice you can offer.", "Kind regards, and thank you again for your time.",
]
RUDE = [
    "Fix my order now, this is ridiculous.", "You people are completely useless.",
    "I want my money back immediately, idiots.", "Stop wasting my time and do your job.",
    "This service is garbage.", "Answer me already, I've waited forever.",
    "What a pathetic excuse for a company.", "Are you all incompetent or just lazy?",
    "Shut up and refund me.", "Worst support ever, you clowns.",
]
# Rows whose label is wrong, as a small model's annotation sometimes is.
WRONG = [("Thank you so much, you are very kind.", "rude"), ("Get lost, you useless people.", "polite"),
         ("Please, and thank you, for your lovely help.", "rude")]


def rows(agreement: float = 1.0) -> list[Record]:
    out = [Record({"text": t}, "polite", id=f"p{i}") for i, t in enumerate(POLITE)]
    out += [Record({"text": t}, "rude", id=f"r{i}") for i, t in enumerate(RUDE)]
    return out + [Record({"text": t}, label, id=f"w{i}", meta={"weight": agreement}) for i, (t, label) in enumerate(WRONG)]


@pytest.fixture(scope="module")
def context() -> FilterContext:
    return FilterContext(seed=0, labels=("polite", "rude"), embedder=Embedder())


def test_the_learned_weight_is_lowest_for_the_wrongly_labelled_rows(context: FilterContext) -> None:
    result = Weights(WeightParams(sources=["learned"])).fit(context).apply(rows())
    weight = {r.id: r.meta["weight"] for r in result.kept}
    assert len(weight) == len(rows()) and all(0.0 <= w <= 1.0 for w in weight.values()) and max(weight.values()) == 1.0
    wrong = [weight[f"w{i}"] for i in range(len(WRONG))]
    right = [w for key, w in weight.items() if not key.startswith("w")]
    # On 23 rows a few right but unhelpful ones (a terse rude line, a curt thank-you) also sink: the wrong ones
    # are all among the lowest quarter, and on average far below.
    lowest = sorted(weight.values())[: len(weight) // 4 + 1]
    assert all(w in lowest for w in wrong) and np.mean(wrong) < 0.1 < 0.5 < np.mean(right)
    again = Weights(WeightParams(sources=["learned"])).fit(context).apply(rows())
    assert [r.meta["weight"] for r in again.kept] == [r.meta["weight"] for r in result.kept]


def test_the_weight_is_the_product_of_its_sources_and_a_threshold_drops_with_a_reason(context: FilterContext) -> None:
    stage = Weights(WeightParams(sources=["agreement", "confidence"], min_weight=0.3)).fit(
        FilterContext(seed=0, labels=context.labels, embedder=context.embedder,
                      real_train=[Record({"text": POLITE[0]}, "polite", id="real-p"), Record({"text": RUDE[0]}, "rude", id="real-r")]))
    result = stage.apply(rows(agreement=0.5))
    for row in [*result.kept, *(r for r in result.dropped)]:
        meta = row.meta
        assert meta["weight"] == pytest.approx(meta["weight_agreement"] * meta["weight_confidence"], abs=1e-3)
    assert {r.id for r in result.dropped} >= {f"w{i}" for i in range(len(WRONG))}
    assert all(r.reason == "low_weight" and "agreement 0.50" in r.detail for r in result.dropped if r.id.startswith("w"))
    spread = result.stats["weights"]
    assert set(spread) == {"polite", "rude"} and spread["polite"]["rows"] + spread["rude"]["rows"] == len(result.kept)


def test_sungen_needs_no_clean_rows_on_separable_noise() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    x = np.eye(2, 8)[labels] + rng.normal(scale=0.2, size=(200, 8))
    noisy = rng.random(200) < 0.2
    weights = learned_weights(x / np.linalg.norm(x, axis=1, keepdims=True), np.where(noisy, 1 - labels, labels), 2)
    assert weights[noisy].mean() < 0.5 < weights[~noisy].mean()


def test_weight_params_refuse_an_unknown_source() -> None:
    with pytest.raises(ValidationError, match="agreement"):
        WeightParams(sources=["vibes"])
