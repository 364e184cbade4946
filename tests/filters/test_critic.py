"""critic: a cross-fitted real-vs-synthetic classifier drops the rows that look most artificial."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from factory.embeddings import Embedder
from factory.filters.base import FilterContext
from factory.filters.critic import Critic, CriticParams
from factory.records import Record

# Real-looking customer messages: the first ten are the user's real rows, the rest play the good
# synthetic rows, so the critic cannot tell those apart from the real ones.
MESSAGES = [
    "My parcel never arrived and the tracking hasn't moved since Tuesday.",
    "Hi, I was charged twice for the same order, can you check?",
    "The blender I bought stopped working after a week.",
    "Can I change the delivery address on my order?",
    "Why is my refund taking so long? It's been 10 days.",
    "The app keeps logging me out every time I open it.",
    "I got the wrong size, how do I swap it?",
    "Is there a way to cancel my subscription online?",
    "My discount code isn't working at checkout.",
    "The courier left the box in the rain and everything is wet.",
    "I ordered two lamps but only one came.",
    "Do you ship to Norway?",
    "The password reset email never shows up.",
    "My invoice shows the wrong VAT number.",
    "The headphones crackle on the left side.",
    "Can someone call me back about my warranty claim?",
    "I'd like to return the jacket, it doesn't fit.",
    "Your website charged me in dollars instead of euros.",
    "The package says delivered but nothing is here.",
    "How long does the battery usually last on this model?",
]
# What a mode-collapsed generator produces: templated boilerplate no customer writes.
BOILERPLATE = [
    "As a valued customer, we appreciate your continued loyalty and are committed to providing you with an exceptional experience.",
    "As a valued customer, your satisfaction is our top priority and we are dedicated to delivering exceptional service.",
    "As a valued customer, we sincerely appreciate your patience and are committed to ensuring an exceptional experience.",
]

REAL = [Record({"text": t}, "complaint", id=f"real{i}") for i, t in enumerate(MESSAGES[:10])]
SYNTHETIC = ([Record({"text": t}, "complaint", id=f"syn{i}") for i, t in enumerate(MESSAGES[10:])]
             + [Record({"text": t}, "complaint", id=f"template{i}") for i, t in enumerate(BOILERPLATE)])


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


@pytest.fixture()
def context(embedder: Embedder) -> FilterContext:
    return FilterContext(seed=0, labels=("complaint",), real_train=REAL, embedder=embedder)


def test_drops_the_templated_rows_and_keeps_the_real_looking_ones(context: FilterContext) -> None:
    result = Critic(CriticParams(drop_fraction=0.25)).fit(context).apply(SYNTHETIC)  # 3 of 13
    assert sorted(d.id for d in result.dropped) == ["template0", "template1", "template2"]
    assert [r.id for r in result.kept] == [f"syn{i}" for i in range(10)]
    assert {d.reason for d in result.dropped} == {"too_artificial"}
    assert all("P(synthetic)=" in d.detail and "/13 most artificial" in d.detail for d in result.dropped)
    worst_kept = max(r.meta["critic_score"] for r in result.kept)
    assert all(d.meta["critic_score"] > worst_kept for d in result.dropped)
    stats = result.stats
    assert (stats["real_rows"], stats["synthetic_rows"], stats["folds"]) == (10, 13, 5)
    assert 0.0 <= stats["auc_after"] < stats["auc_before"] <= 1.0, "the critic separates less after the filter"


def test_default_drops_a_tenth_most_artificial_first(context: FilterContext) -> None:
    result = Critic(CriticParams()).fit(context).apply(SYNTHETIC)
    assert len(result.dropped) == 1 and result.dropped[0].id.startswith("template")
    assert "rank 1/13" in result.dropped[0].detail


def test_holdout_rows_are_never_used(context: FilterContext) -> None:
    # Holdout rows equal to the boilerplate would, if used as "real", make it look real.
    leaky = FilterContext(seed=0, labels=("complaint",), real_train=REAL, embedder=context.embedder,
                          real_holdout=[Record({"text": t}, "complaint", id=f"h{i}") for i, t in enumerate(BOILERPLATE)])
    a = Critic(CriticParams(drop_fraction=0.25)).fit(context).apply(SYNTHETIC)
    b = Critic(CriticParams(drop_fraction=0.25)).fit(leaky).apply(SYNTHETIC)
    assert [r.meta for r in a.kept] == [r.meta for r in b.kept] and a.stats == b.stats


def test_threshold_drops_every_row_above_it(context: FilterContext) -> None:
    scores = [r.meta["critic_score"] for r in Critic(CriticParams(drop_fraction=0.0)).fit(context).apply(SYNTHETIC).kept]
    threshold = sorted(scores)[-3]  # strictly above: the two highest go
    result = Critic(CriticParams(threshold=threshold)).fit(context).apply(SYNTHETIC)
    assert len(result.dropped) == 2 and all(d.meta["critic_score"] > threshold for d in result.dropped)
    assert all(r.meta["critic_score"] <= threshold for r in result.kept)
    assert result.stats["rule"] == f"threshold {threshold:g}"


def test_too_few_real_rows_pass_everything_through(embedder: Embedder) -> None:
    few = FilterContext(seed=0, real_train=REAL[:3], embedder=embedder)
    result = Critic(CriticParams()).fit(few).apply(SYNTHETIC)
    assert result.kept == SYNTHETIC and result.dropped == []
    assert result.stats["skipped"] == "only 3 real rows; need 8"
    assert Critic(CriticParams()).apply(SYNTHETIC).stats["skipped"] == "only 0 real rows; need 8"  # never fitted
    assert Critic(CriticParams(min_real=3)).fit(few).apply(SYNTHETIC).stats["folds"] == 3


def test_edge_cases(context: FilterContext) -> None:
    critic = Critic(CriticParams()).fit(context)
    assert critic.apply([]).kept == [] and "skipped" in critic.apply([]).stats
    single = critic.apply(SYNTHETIC[:1])
    assert single.kept == SYNTHETIC[:1] and single.stats["skipped"] == "only 1 synthetic rows; need 2"
    same = critic.apply([Record({"text": "Same text."}, "complaint", id=f"s{i}") for i in range(10)])
    assert len(same.kept) == 9 and len(same.dropped) == 1  # no failure, and still a tenth dropped
    odd = [
        *SYNTHETIC[:5],
        Record({"text": "Le colis est arrivé abîmé 📦😢 — qu'est-ce que je fais ?"}, "complaint", id="unicode"),
        Record({"text": "My order is late. " * 500}, "complaint", id="long"),
        Record({"text": "🙂"}, id="emoji-only"),
    ]
    result = critic.apply(odd)
    assert len(result.kept) + len(result.dropped) == len(odd) and len(result.dropped) == 0  # floor(0.1 * 8)
    assert all(0.0 <= r.meta["critic_score"] <= 1.0 for r in result.kept)
    first = Critic(CriticParams(drop_fraction=0.25)).fit(context).apply(SYNTHETIC)
    again = Critic(CriticParams(drop_fraction=0.25)).fit(context).apply(SYNTHETIC)
    assert [r.meta for r in first.kept] == [r.meta for r in again.kept]


def test_params_are_validated() -> None:
    assert CriticParams().drop_fraction == 0.1 and CriticParams().threshold is None
    only_threshold = CriticParams(threshold=0.8)
    assert only_threshold.drop_fraction is None
    assert CriticParams(**only_threshold.model_dump()) == only_threshold  # the resolved recipe reloads
    for bad in ({"drop_fraction": 0.2, "threshold": 0.8}, {"drop_fraction": None}, {"drop_fraction": 1.0},
                {"threshold": 1.0}, {"min_real": 1}, {"colour": "red"}):
        with pytest.raises(ValidationError):
            CriticParams(**bad)


def test_style_critic_drops_on_topic_rows_that_are_too_long(context: FilterContext) -> None:
    rambling = [Record({"text": f"{t[:-1]}, and honestly, after everything that has happened with this order, the delays, the "
                       "emails, the waiting, I really do think someone should look into it properly."},
                   "complaint", id=f"long{i}") for i, t in enumerate(MESSAGES[10:])]
    rows = SYNTHETIC[:10] + rambling
    result = Critic(CriticParams(features="style", drop_fraction=0.5)).fit(context).apply(rows)  # 10 of 20
    assert sorted(d.id for d in result.dropped) == sorted(r.id for r in rambling)
    assert result.stats["auc_after"] < result.stats["auc_before"]


# Formal letters: no real row reads like them, but a person decides they are good data.
FORMAL = [Record({"text": f"Dear support team, I am writing regarding order {n}: {issue}. Kind regards, {name}."},
                 "complaint", id=f"formal{i}")
          for i, (n, issue, name) in enumerate([
              (1042, "the parcel has not arrived", "Anna"), (2210, "I was charged twice", "Ben"),
              (3301, "the kettle leaks", "Chloe"), (4417, "the size is wrong", "Dev"),
              (5530, "the refund is overdue", "Emil"), (6644, "the invoice is wrong", "Fay")])]


def test_rows_a_person_kept_teach_the_critic(embedder: Embedder) -> None:
    def scores(reviewed: list[Record]) -> tuple[dict[str, float], dict]:
        context = FilterContext(seed=0, labels=("complaint",), real_train=REAL, embedder=embedder, reviewed=reviewed)
        result = Critic(CriticParams(drop_fraction=0.0)).fit(context).apply(SYNTHETIC + FORMAL)
        return {r.id: r.meta["critic_score"] for r in result.kept}, result.stats

    before, stats_before = scores([])
    # Four of the six formal letters accepted: the two nobody reviewed look less artificial than they did.
    after, stats_after = scores(FORMAL[:4])
    unreviewed = ["formal4", "formal5"]
    assert sum(after[i] for i in unreviewed) < sum(before[i] for i in unreviewed) - 0.2
    assert stats_after["reviewed_rows"] == 4 and "reviewed_rows" not in stats_before
    # The boilerplate no one accepted still scores as artificial as ever, above every formal letter.
    assert min(after[f"template{i}"] for i in range(3)) > max(after[i] for i in unreviewed)
    # Three are too few to learn from: the critic is as it was.
    assert scores(FORMAL[:3]) == (before, stats_before)
