"""exact_dedup: drop a row whose normalised text was already seen (first occurrence wins)."""

from __future__ import annotations

from collections.abc import Sequence

from factory.filters.base import Filter, FilterResult, compared_text
from factory.filters.params import ExactDedupParams
from factory.records import Record, Rejected
from factory.text import normalize_many


def dedup_keys(texts: Sequence[str], labels: Sequence[str | None] | None) -> list[str]:
    """What two rows must share to be copies: the normalised text (and the label, when given)."""
    keys = normalize_many(texts)
    return keys if labels is None else [f"{label}\0{key}" for label, key in zip(labels, keys)]


class ExactDedup(Filter):
    """Keeps the first row of each normalised text (case, whitespace, punctuation, Unicode form)."""

    type = "exact_dedup"
    Params = ExactDedupParams
    params: ExactDedupParams

    def apply(self, records: Sequence[Record]) -> FilterResult:
        texts = [compared_text(r, self.params.field, self.params.include_response) for r in records]
        first = self.first_copies(texts, [r.label for r in records] if self.params.per_label else None)
        kept: list[Record] = []
        dropped: list[Rejected] = []
        for row, record in enumerate(records):
            if row in first:
                dropped.append(Rejected.from_record(record, self.type, "exact_duplicate",
                                                    f"same text as {records[first[row]].id}"))
            else:
                kept.append(record)
        return FilterResult(kept, dropped)

    def first_copies(self, texts: Sequence[str], labels: Sequence[str | None] | None) -> dict[int, int]:
        """{row: the first row with the same key} for every row that repeats an earlier row's key.

        A row without the compared text has nothing to compare: never a copy. An engine that searches
        elsewhere overrides this."""
        first_seen: dict[str, int] = {}
        out: dict[int, int] = {}
        for row, (text, key) in enumerate(zip(texts, dedup_keys(texts, labels))):
            if text:
                earliest = first_seen.setdefault(key, row)
                if earliest != row:
                    out[row] = earliest
        return out
