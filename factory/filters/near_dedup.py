"""near_dedup: drops rows that are near copies of an earlier row (MinHash + LSH, exact Jaccard confirms).

The search itself is `factory.minhash` (shared with the splits and the Ray engine); this module is
the filter: which text it compares, which row of a cluster it keeps, and what it says about the rest.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from factory.filters.base import Filter, FilterResult, compared_text
from factory.filters.params import NearDedupParams
from factory.minhash import NearDuplicates, near_duplicates
from factory.records import Record, Rejected


class NearDedup(Filter):
    """Drops near copies: rows whose shingle sets overlap an earlier row's by Jaccard >= threshold.

    MinHash + LSH proposes candidate pairs in near-linear time; each candidate is confirmed with the
    exact Jaccard, so a dropped row really is that similar to some row. Confirmed pairs are joined
    into clusters (a chain A~B~C is one cluster even if A and C are further apart); the earliest row
    of each cluster is kept, and the detail of every dropped row names it, with their exact Jaccard
    and, for a chained row, the cluster member it matched.

    Why character 3-grams by default: in a 20-word row one word edit changes about three word
    3-grams, which takes their Jaccard to 0.71, so word shingles at 0.8 only catch near-exact copies
    of short texts. Character 3-grams keep rows with about one word edit in ten above 0.8 and leave
    reworded paraphrases well below it (benchmarks/dedup.py measures both).
    """

    type = "near_dedup"
    Params = NearDedupParams
    params: NearDedupParams

    def apply(self, records: Sequence[Record]) -> FilterResult:
        p = self.params
        n = len(records)
        ngram = p.ngram
        bands, rows = p.resolved_bands()
        stats: dict[str, object] = {"unit": p.unit, "ngram": ngram, "bands": bands, "rows": rows}
        if n == 0:
            return FilterResult([], [], {**stats, "candidate_pairs": 0, "confirmed_pairs": 0, "clusters": 0,
                                         "rows_without_shingles": 0})
        texts = [compared_text(r, p.field, p.include_response) for r in records]
        groups = None
        if p.per_label:
            names: dict[str | None, int] = {}
            groups = np.fromiter((names.setdefault(r.label, len(names)) for r in records), dtype=np.int64, count=n)
        found = self.find(texts, groups)
        root, a, b, similarity = found.root, found.a, found.b, found.similarity
        dropped_rows = np.flatnonzero(root != np.arange(n))
        to_root = found.jaccard(root[dropped_rows], dropped_rows)
        via = self._links(dropped_rows[to_root < p.threshold - 1e-12], a, b, similarity)

        drop = np.zeros(n, dtype=bool)
        drop[dropped_rows] = True
        kept = [r for r, d in zip(records, drop.tolist()) if not d]
        dropped: list[Rejected] = []
        shingle = f"{p.unit} {ngram}-grams"
        for row, jac in zip(dropped_rows.tolist(), to_root.tolist()):
            keeper = records[int(root[row])]
            if row in via:
                other, other_jac = via[row]
                detail = (f"near duplicate of {records[other].id} (Jaccard {other_jac:.2f} on {shingle}), in the "
                          f"cluster kept as {keeper.id} (Jaccard {jac:.2f})")
            else:
                detail = f"near duplicate of {keeper.id} (Jaccard {jac:.2f} on {shingle})"
            rejected = Rejected.from_record(records[row], self.type, "near_duplicate", detail)
            rejected.meta["near_duplicate_of"] = keeper.id
            dropped.append(rejected)
        stats.update({
            "candidate_pairs": found.candidates, "confirmed_pairs": len(a),
            "clusters": len(np.unique(root[dropped_rows])), "rows_without_shingles": found.rows_without_shingles,
        })
        return FilterResult(kept, dropped, stats)

    def find(self, texts: Sequence[str], groups: np.ndarray | None) -> NearDuplicates:
        """The near-duplicate clusters of `texts` (an engine that runs it elsewhere overrides this)."""
        return near_duplicates(texts, self.params, groups)

    @staticmethod
    def _links(rows: np.ndarray, a: np.ndarray, b: np.ndarray, similarity: np.ndarray) -> dict[int, tuple[int, float]]:
        """For rows that joined their cluster through a chain: the most similar confirmed partner."""
        if not len(rows):
            return {}
        ends, others = np.concatenate((a, b)), np.concatenate((b, a))
        sims = np.concatenate((similarity, similarity))
        mine = np.isin(ends, rows)
        ends, others, sims = ends[mine], others[mine], sims[mine]
        order = np.lexsort((others, -sims, ends))
        first = np.ones(len(order), dtype=bool)
        first[1:] = ends[order][1:] != ends[order][:-1]
        pick = order[first]
        return {end: (other, sim) for end, other, sim in zip(ends[pick].tolist(), others[pick].tolist(),
                                                              sims[pick].tolist())}
