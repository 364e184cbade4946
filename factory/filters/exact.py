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
        first_seen: dict[tuple[str | None, str], str] = {}
        kept: list[Record] = []
        dropped: list[Rejected] = []
        for record in records:
            text = record.text + ("\n" + (record.response or "") if self.params.include_response else "")
            key = (record.label if self.params.per_label else None, normalize(text))
            if key in first_seen:
                dropped.append(Rejected.from_record(record, self.type, "exact_duplicate", f"same text as {first_seen[key]}"))
            else:
                first_seen[key] = record.id
                kept.append(record)
        return FilterResult(kept, dropped)
