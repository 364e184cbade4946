"""Choosing a passage per prompt: sampling covers the corpus before reusing it; retrieval finds the relevant part."""

from __future__ import annotations

from factory.corpus import Corpus, Passage, SourceStats
from factory.corpus.selection import PassagePicker
from factory.embeddings import Embedder
from factory.spec import GroundingSpec

KITCHEN = ["The kettle boils a litre of water in three minutes.", "This toaster browns bread evenly on both sides.",
           "The blender crushes ice for smoothies.", "Our oven bakes bread and roasts vegetables.",
           "The fridge keeps milk and vegetables cold.", "The microwave reheats soup in a minute."]
GARDEN = ["Prune the roses in late winter.", "Tomatoes need sun and a stake to climb.", "Mow the lawn when the grass is dry.",
          "Trim the hedge after the birds have nested.", "Turn the compost heap every few weeks.", "Plant tulip bulbs in autumn."]


def corpus(texts: list[str]) -> Corpus:
    return Corpus([Passage(f"d{k}-0", t, 0, f"doc{k}.txt") for k, t in enumerate(texts)], [SourceStats("docs")])


def test_sampling_uses_every_passage_once_before_any_twice_and_is_reproducible() -> None:
    texts = [f"Passage number {k} about item {k}." for k in range(10)]
    picker = PassagePicker(corpus(texts), GroundingSpec(), seed=5, buckets=["a", "b"])
    first = [picker.pick(bucket, index).id for index in range(5) for bucket in ("a", "b")]
    assert sorted(first) == sorted(f"d{k}-0" for k in range(10))
    again = PassagePicker(corpus(texts), GroundingSpec(), seed=5, buckets=["a", "b"])
    assert [again.pick("b", 3).id, again.pick("a", 7).id] == [picker.pick("b", 3).id, picker.pick("a", 7).id]
    other_seed = PassagePicker(corpus(texts), GroundingSpec(), seed=6, buckets=["a", "b"])
    assert [other_seed.pick("a", i).id for i in range(5)] != [picker.pick("a", i).id for i in range(5)]


def test_retrieval_draws_from_the_passages_nearest_the_prompt(tmp_path) -> None:
    embedder = Embedder(cache=tmp_path / "embeddings.sqlite")
    picker = PassagePicker(corpus(KITCHEN + GARDEN), GroundingSpec(select="retrieval", candidates=4), seed=0,
                           buckets=["good", "bad"], embedder=embedder)
    kitchen = [picker.pick("good", i, "a review of a kitchen appliance: kettle, toaster, oven, cooking").text for i in range(12)]
    garden = [picker.pick("bad", i, "gardening advice: flowers, lawn, hedges, planting").text for i in range(12)]
    assert all(t in KITCHEN for t in kitchen) and len(set(kitchen)) > 1, "a prompt draws among its nearest passages"
    assert all(t in GARDEN for t in garden)
    assert embedder.encoded >= len(KITCHEN + GARDEN)
    again = Embedder(cache=tmp_path / "embeddings.sqlite")
    PassagePicker(corpus(KITCHEN + GARDEN), GroundingSpec(select="retrieval"), seed=0, buckets=["good"], embedder=again)
    assert again.encoded == 0, "a resumed run embeds no passage again (the run's cache holds them)"
