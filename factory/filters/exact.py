"""exact_dedup: drop a row whose normalised text was already seen (first occurrence wins)."""

from __future__ import annotations

from collections.abc import Sequence

from factory.filters.base import Filter, FilterResult, compared_text
from factory.filters.params import ExactDedupParams
from factory.records import Record, Rejected
from factory.text import normalize_many


class ExactDedup(Filter):
    """Keeps the first row of each normalised text (case, whitespace, punctuation, Unicode form)."""

    type = "exact_dedup"
    Params = ExactDedupParams
    params: ExactDedupParams

    def apply(self, records: Sequence[Record]) -> FilterResult:
        texts = [compared_text(r, self.params.field, self.params.include_response) for r in records]
        keys: Sequence[object] = normalize_many(texts)
        if self.params.per_label:
            keys = list(zip((r.label for r in records), keys))
        first_seen: dict[object, str] = {}
        kept: list[Record] = []
        dropped: list[Rejected] = []
        for record, text, key in zip(records, texts, keys):
            if not text:  # nothing to compare (a row without the compared field)
                kept.append(record)
                continue
            seen = first_seen.get(key)
            if seen is None:
                first_seen[key] = record.id
                kept.append(record)
            else:
                dropped.append(Rejected.from_record(record, self.type, "exact_duplicate", f"same text as {seen}"))
        return FilterResult(kept, dropped)
