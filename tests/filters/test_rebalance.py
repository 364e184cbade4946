"""rebalance: per-label KMeans caps over-full clusters and reports (and asks to top up) thin ones."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from factory.embeddings import Embedder
from factory.filters.base import FilterContext
from factory.filters.rebalance import Rebalance, RebalanceParams
from factory.records import Record

ITEMS = ["kettle", "lamp", "chair", "toaster", "blender", "desk", "mirror", "rug", "sofa", "clock"]
NAMES = ["anna", "ben", "carla", "dev", "emre", "fatima", "gus", "hana", "ivan", "jo",
         "kim", "lea", "mo", "nina", "omar", "pia", "quinn", "rosa", "sam", "tove"]
# One label, three topics: two over-covered (20 rows each) and one the generator barely touched (2).
REFUND = [f"I want a refund for the {ITEMS[i % 10]} from order #{1000 + i}, it arrived broken." for i in range(20)]
LOGIN = [f"I cannot log in to my account {name}, the password is rejected every time." for name in NAMES]
ABROAD = ["Do you ship to Norway?", "Are there customs fees for deliveries to Japan?"]
ROWS = ([Record({"text": t}, "complaint", id=f"refund{i}") for i, t in enumerate(REFUND)]
        + [Record({"text": t}, "complaint", id=f"login{i}") for i, t in enumerate(LOGIN)]
        + [Record({"text": t}, "complaint", id=f"abroad{i}") for i, t in enumerate(ABROAD)])


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


@pytest.fixture()
def context(embedder: Embedder) -> FilterContext:
    return FilterContext(seed=0, labels=("complaint", "praise"), embedder=embedder)


def test_caps_over_full_clusters_keeping_the_most_typical_rows(context: FilterContext) -> None:
    result = Rebalance(RebalanceParams(clusters_per_label=3)).fit(context).apply(ROWS)
    report = result.stats["labels"]["complaint"]
    # max_share 0.25 is below an even share of 3 clusters, so the cap is 1/3 of 42 rows = 14.
    assert (report["k"], report["k_from"], report["sizes"], report["cap"]) == (3, "fixed", [20, 20, 2], 14)
    assert len(result.kept) == 30 and report["dropped"] == 12
    assert sum(d.id.startswith("refund") for d in result.dropped) == 6
    assert sum(d.id.startswith("login") for d in result.dropped) == 6
    assert {r.id for r in result.kept} >= {"abroad0", "abroad1"}
    assert [r.id for r in result.kept] == [r.id for r in ROWS if r.id in {k.id for k in result.kept}], "input order"
    assert {d.reason for d in result.dropped} == {"over_represented"}
    refund_drop = next(d for d in result.dropped if d.id.startswith("refund"))
    assert "cluster 0 of 'complaint' holds 20 of 42 rows (48% > cap 33% = 14 rows)" in refund_drop.detail
    ranks = sorted(int(d.detail.rsplit("#", 1)[1].split()[0]) for d in result.dropped if d.id.startswith("refund"))
    assert ranks == [15, 16, 17, 18, 19, 20], "the rows farthest from the centre go"
    assert all(r.meta["cluster"] in (0, 1, 2) for r in result.kept) and "cluster" not in ROWS[0].meta
    assert result.stats["balance_before"] == {"complaint": 42, "praise": 0}  # a label with no rows shows as 0
    assert result.stats["balance_after"] == {"complaint": 30, "praise": 0}
    assert "top_up" not in result.stats


def test_thin_clusters_are_reported_and_top_up_asks_for_more(context: FilterContext) -> None:
    result = Rebalance(RebalanceParams(top_up=True)).fit(context).apply(ROWS)
    report = result.stats["labels"]["complaint"]
    assert report["k_from"] == "silhouette" and report["k"] == 3 and 0 < report["silhouette"] <= 1
    # The two texts are about equally central, so their order follows the embeddings' last digits.
    thin, top_up = report["thin"], result.stats["top_up"]["complaint"]
    assert [(t["cluster"], t["size"], t["share"], sorted(t["examples"])) for t in thin] == [(2, 2, round(2 / 42, 4), sorted(ABROAD))]
    assert [(t["cluster"], sorted(t["examples"]), t["wanted"]) for t in top_up] == [(2, sorted(ABROAD), 12)]
    assert set(result.stats["top_up"]) == {"complaint"}
    json.dumps(result.stats)  # the build writes it to the manifest


def test_small_labels_pass_through_and_k_never_exceeds_the_rows(context: FilterContext) -> None:
    praise = [Record({"text": t}, "praise", id=f"p{i}") for i, t in enumerate(["Great service!", "Loved it.", "Thanks, superb."])]
    result = Rebalance(RebalanceParams(clusters_per_label=3)).fit(context).apply(praise + ROWS)
    assert {r.id for r in result.kept} >= {"p0", "p1", "p2"}
    assert result.stats["labels"]["praise"] == {"rows": 3, "skipped": "only 3 rows; need 10"}
    twelve = ROWS[:6] + ROWS[20:26]
    many = Rebalance(RebalanceParams(clusters_per_label=50)).fit(context).apply(twelve)
    assert many.stats["labels"]["complaint"]["k"] == 12 and not many.dropped


def test_edge_cases(context: FilterContext) -> None:
    stage = Rebalance(RebalanceParams(top_up=True)).fit(context)
    empty = stage.apply([])
    assert empty.kept == [] and empty.stats["top_up"] == {} and empty.stats["balance_before"] == {"complaint": 0, "praise": 0}
    assert stage.apply(ROWS[:1]).kept == ROWS[:1]
    same = stage.apply([Record({"text": "Same text."}, "complaint", id=f"s{i}") for i in range(30)])
    assert len(same.kept) == 30 and same.stats["labels"]["complaint"]["skipped"] == "too few distinct rows to cluster"
    odd = [
        Record({"text": "Das Paket kam beschädigt an 📦😢 — was nun?"}, "complaint", id="unicode"),
        Record({"text": "My order is late. " * 500}, "complaint", id="long"),
        Record({"text": "🙂🙂🙂"}, "complaint", id="emoji"),
    ]
    result = Rebalance(RebalanceParams(clusters_per_label=3)).fit(context).apply(ROWS + odd)
    assert len(result.kept) + len(result.dropped) == 45
    thin_examples = [e for c in result.stats["labels"]["complaint"]["thin"] for e in c["examples"]]
    assert all(len(e) <= 300 for e in thin_examples), "long rows are clipped in the stats"
    # Instruction rows (no label) form the build's "all" bucket; repeated runs give the same answer.
    rows = [Record({"instruction": r.text, "response": "ok"}, id=r.id) for r in ROWS]
    first = Rebalance(RebalanceParams()).fit(context).apply(rows)
    again = Rebalance(RebalanceParams()).fit(context).apply(rows)
    assert "all" in first.stats["labels"] and [r.id for r in first.kept] == [r.id for r in again.kept]


def test_params_are_validated() -> None:
    assert RebalanceParams().clusters_per_label == "auto" and RebalanceParams().max_share == 0.25
    assert RebalanceParams(clusters_per_label=8).clusters_per_label == 8
    for bad in ({"clusters_per_label": "many"}, {"clusters_per_label": 1}, {"max_share": 0}, {"max_share": 1.5}, {"thin_share": 1.0},
                {"min_rows": 1}, {"colour": "red"}):
        with pytest.raises(ValidationError):
            RebalanceParams(**bad)
