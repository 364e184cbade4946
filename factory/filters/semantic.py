"""semantic_dedup: drop a row whose embedding is too close to a row already kept (greedy, input order)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from factory.filters.base import Filter, FilterResult
from factory.filters.params import SemanticDedupParams
from factory.filters.similarity import BLOCK, best_match
from factory.records import Record, Rejected


class SemanticDedup(Filter):
    """Greedy semantic dedup: rows are kept in input order unless one already kept is too similar.

    Candidates go in blocks: one matrix product against the kept rows so far, then a block-internal
    product for the rows of the same block, decided in order. Kept vectors are compacted into the
    front of the block-processed array, so the kept set costs no extra memory.
    """

    type = "semantic_dedup"
    Params = SemanticDedupParams
    params: SemanticDedupParams

    def apply(self, records: Sequence[Record]) -> FilterResult:
        if not records:
            return FilterResult([], [])
        vectors = self.context.embeddings().encode([r.text for r in records])
        groups: dict[str | None, list[int]] = defaultdict(list)
        for i, record in enumerate(records):
            groups[record.label if self.params.scope == "label" else None].append(i)
        match: dict[int, tuple[int, float]] = {}  # dropped row -> (kept row, similarity)
        for members in groups.values():
            index = np.asarray(members)
            for local, (other, sim) in greedy_dedup(vectors[index], self.params.threshold).items():
                match[int(index[local])] = (int(index[other]), sim)
        kept = [r for i, r in enumerate(records) if i not in match]
        dropped = [
            Rejected.from_record(records[i], self.type, "semantic_duplicate",
                                 f"cosine {sim:.3f} > {self.params.threshold} with kept row {records[other].id}")
            for i, (other, sim) in sorted(match.items())
        ]
        return FilterResult(kept, dropped)


def greedy_dedup(x: np.ndarray, threshold: float, block: int | None = None) -> dict[int, tuple[int, float]]:
    """Greedy pass over unit vectors `x` (which it overwrites): {dropped row: (closest kept row, cosine)}.

    A row is dropped when its best cosine with any earlier kept row is above `threshold`.
    """
    block = block or BLOCK
    x = np.ascontiguousarray(x, dtype=np.float32)
    kept_rows: list[int] = []  # kept_rows[k] is the original row now stored at x[k]
    dropped: dict[int, tuple[int, float]] = {}
    for start in range(0, len(x), block):
        xb = x[start : start + block].copy()
        prior_best, prior_arg = best_match(xb, x[: len(kept_rows)], block)
        inner = xb @ xb.T
        local: list[int] = []
        for i in range(len(xb)):
            best, other = float(prior_best[i]), (kept_rows[prior_arg[i]] if prior_arg[i] >= 0 else -1)
            if local:
                row = inner[i, local]
                j = int(row.argmax())
                if row[j] > best:
                    best, other = float(row[j]), start + local[j]
            if best > threshold:
                dropped[start + i] = (other, min(best, 1.0))
            else:
                local.append(i)
        # The block is decided, so its kept rows can move down over rows no later block reads.
        x[len(kept_rows) : len(kept_rows) + len(local)] = xb[local]
        kept_rows.extend(start + i for i in local)
    return dropped
