"""exact_dedup: drop a row whose normalised text was already seen (first occurrence wins)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import Field

from factory.filters.base import Filter, FilterParams, FilterResult
from factory.records import Record, Rejected
from factory.text import normalize


class ExactDedupParams(FilterParams):
    type: Literal["exact_dedup"] = "exact_dedup"
    per_label: bool = Field(
        False, description="Only drop duplicates within the same label (cross-label copies are the `conflicts` filter's job)."
    )
    include_response: bool = Field(False, description="For instruction rows, compare instruction + response.")


class ExactDedup(Filter):
    """Keeps the first row of each normalised text (case, whitespace, punctuation, Unicode form)."""

    type = "exact_dedup"
    Params = ExactDedupParams
    params: ExactDedupParams

    def apply(self, records: Sequence[Record]) -> FilterResult:
        per_label, with_response = self.params.per_label, self.params.include_response
        first_seen: dict[object, str] = {}
        kept: list[Record] = []
        dropped: list[Rejected] = []
        # Hot loop (150k+ rows/s): the key is the bare normalised text unless labels must split it.
        for record in records:
            text = record.text + "\n" + (record.response or "") if with_response else record.text
            key: object = (record.label, normalize(text)) if per_label else normalize(text)
            seen = first_seen.get(key)
            if seen is None:
                first_seen[key] = record.id
                kept.append(record)
            else:
                dropped.append(Rejected.from_record(record, self.type, "exact_duplicate", f"same text as {seen}"))
        return FilterResult(kept, dropped)
