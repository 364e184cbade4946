"""Which passage grounds which prompt: a pure function of (seed, bucket, index), so a resumed run
or another worker rebuilds the same prompt."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING

from factory.corpus import Corpus, Passage
from factory.spec import GroundingSpec

if TYPE_CHECKING:
    from factory.embeddings import Embedder


class PassagePicker:
    """Chooses a passage per prompt.

    `sampling` walks a seeded permutation of the corpus: prompt `index` of the `k`-th of `B` buckets
    takes position `index * B + k`, so no passage is used twice before every one has been used once
    (as long as the buckets are asked evenly, which the planner does).

    `retrieval` embeds every passage once (the run's shared embedder, cached on disk) and finds the
    `candidates` nearest to the prompt's query (its label, axes and examples) with scikit-learn's
    nearest-neighbour index; the prompt's own random stream picks one of them, so prompts of one
    label spread over its neighbourhood instead of all taking the single nearest passage.
    """

    def __init__(self, corpus: Corpus, grounding: GroundingSpec, seed: int, buckets: Sequence[str],
                 embedder: Embedder | None = None) -> None:
        self.passages = corpus.passages
        self.select = grounding.select
        self.seed = seed
        self.buckets = list(buckets)
        self.order = list(range(len(self.passages)))
        random.Random(f"{seed}/passages").shuffle(self.order)
        self.candidates = min(grounding.candidates, len(self.passages))
        if self.select == "retrieval":
            if embedder is None:
                raise ValueError("retrieval needs an embedder")
            from sklearn.neighbors import NearestNeighbors

            self.embedder = embedder
            vectors = embedder.encode([p.text for p in self.passages])
            self.index = NearestNeighbors(n_neighbors=self.candidates, metric="cosine", algorithm="brute").fit(vectors)

    def pick(self, bucket: str, index: int, query: str = "") -> Passage:
        if self.select == "sampling":
            position = index * len(self.buckets) + self.buckets.index(bucket)
            return self.passages[self.order[position % len(self.passages)]]
        _, nearest = self.index.kneighbors(self.embedder.encode([query]), n_neighbors=self.candidates)
        rng = random.Random(f"{self.seed}/{bucket}/{index}/passage")
        return self.passages[int(rng.choice(list(nearest[0])))]
