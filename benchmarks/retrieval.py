"""Passage retrieval at corpus scale: PassagePicker's faiss index on 100k passages, against a plain numpy
scan and scikit-learn's brute-force NearestNeighbors (the baselines) in the same run.

Vectors are random unit vectors of the embedder's width (384): the index's cost does not depend on
what the texts say, and embedding 100k real passages would measure the encoder instead (see
benchmarks/embeddings.py for that).

    python benchmarks/retrieval.py [--passages 100000] [--queries 500] [--candidates 16]
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from factory.corpus import Corpus, Passage, SourceStats
from factory.corpus.selection import PassagePicker
from factory.spec import GroundingSpec


class PrecomputedEmbedder:
    """Hands out fixed vectors: passages by position, queries from a seeded stream."""

    def __init__(self, passages: np.ndarray, seed: int) -> None:
        self.passages = passages
        self.rng = np.random.default_rng(seed)
        self.calls = 0

    def encode(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        if self.calls == 1:
            return self.passages
        return unit(self.rng.standard_normal((len(texts), self.passages.shape[1]), dtype=np.float32))


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passages", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--candidates", type=int, default=16)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    vectors = unit(rng.standard_normal((args.passages, 384), dtype=np.float32))
    corpus = Corpus([Passage(f"d{k}-0", f"passage {k}", 0, f"doc{k}") for k in range(args.passages)], [SourceStats("bench")])

    started = time.perf_counter()
    picker = PassagePicker(corpus, GroundingSpec(select="retrieval", candidates=args.candidates), seed=0, buckets=["a"],
                           embedder=PrecomputedEmbedder(vectors, 1))  # type: ignore[arg-type]
    build_s = time.perf_counter() - started
    started = time.perf_counter()
    picked = [picker.pick("a", i, "query").id for i in range(args.queries)]
    pick_s = time.perf_counter() - started

    queries = PrecomputedEmbedder(vectors, 1)
    queries.calls = 1
    started = time.perf_counter()
    for _ in range(args.queries):  # the baseline: a full scan and a partial sort per query
        q = queries.encode(["query"])[0]
        np.argpartition(-(vectors @ q), args.candidates)[: args.candidates]
    scan_s = time.perf_counter() - started
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=args.candidates, metric="cosine", algorithm="brute").fit(vectors)
    started = time.perf_counter()
    for _ in range(args.queries):
        nn.kneighbors(queries.encode(["query"]))
    sklearn_s = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{args.passages} passages x 384 dims, {args.queries} prompts, {args.candidates} candidates each")
    print(f"  PassagePicker (faiss IndexFlatIP):     index {build_s:.2f} s, {1000 * pick_s / args.queries:.2f} ms per prompt")
    print(f"  baseline numpy scan + argpartition:    {1000 * scan_s / args.queries:.2f} ms per prompt")
    print(f"  baseline scikit-learn NearestNeighbors: {1000 * sklearn_s / args.queries:.2f} ms per prompt (brute, cosine)")
    print(f"  distinct passages picked: {len(set(picked))} of {args.queries}; peak memory {peak:.0f} MB")


if __name__ == "__main__":
    main()
