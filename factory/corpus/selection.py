"""Which passage grounds which prompt: a pure function of (seed, bucket, index), so a resumed run
or another worker rebuilds the same prompt."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from factory.corpus import Corpus, Passage
from factory.errors import FactoryError
from factory.spec import GroundingSpec

if TYPE_CHECKING:
    from factory.embeddings import Embedder


class PassagePicker:
    """Chooses a passage per prompt.

    `sampling` walks a seeded permutation of the corpus: prompt `index` of the `k`-th of `B` buckets
    takes position `index * B + k`, so no passage is used twice before every one has been used once
    (as long as the buckets are asked evenly, which the planner does).

    `retrieval` embeds every passage once (the run's shared embedder, cached on disk) and finds the
    `candidates` nearest to the prompt's query (its label, axes and examples) in a faiss inner-product
    index (exact; the vectors are normalised, so it ranks by cosine); the prompt's own random stream
    picks one of them, so prompts of one label spread over its neighbourhood instead of all taking the
    single nearest passage.
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
            self.embedder = embedder
            self.index = _inner_product_index(embedder.encode([p.text for p in self.passages]))

    def pick(self, bucket: str, index: int, query: str = "") -> Passage:
        if self.select == "sampling":
            position = index * len(self.buckets) + self.buckets.index(bucket)
            return self.passages[self.order[position % len(self.passages)]]
        _, nearest = self.index.search(np.ascontiguousarray(self.embedder.encode([query]), dtype=np.float32), self.candidates)
        rng = random.Random(f"{self.seed}/{bucket}/{index}/passage")
        return self.passages[int(rng.choice([int(k) for k in nearest[0] if k >= 0]))]


def _inner_product_index(vectors: np.ndarray) -> Any:
    try:
        import faiss
    except ImportError:
        raise FactoryError("grounding.select: retrieval needs faiss (pip install 'dataset-factory[retrieval]')") from None
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index
