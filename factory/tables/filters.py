"""The filters a table recipe takes: exact row dedup (and unique columns), and leakage by distance to real rows."""

from __future__ import annotations

import json
from collections.abc import Sequence

from factory.filters.base import Filter, FilterResult
from factory.filters.params import ExactDedupParams, LeakageParams
from factory.records import Record, Rejected
from factory.tables.distance import closest_real


class RowDedup(Filter):
    """Drops a row equal to an earlier one of its table in every column (duplicate), or repeating an
    earlier row's value in a unique column (not_unique); the first one is kept. A unique column is
    `name`, or `table.name` in a recipe of related tables."""

    type = "exact_dedup"
    Params = ExactDedupParams

    def apply(self, records: Sequence[Record]) -> FilterResult:
        params: ExactDedupParams = self.params  # type: ignore[assignment]
        unique = [(name.partition(".")[0], name.partition(".")[2]) if "." in name else (None, name)
                  for name in params.unique_columns or ()]
        seen_rows: set[str] = set()
        seen_values: dict[tuple[str | None, str], set[str]] = {key: set() for key in unique}
        kept, dropped = [], []
        for record in records:
            table = record.meta.get("bucket")
            mine = [(key, json.dumps(record.fields[key[1]], default=str)) for key in unique
                    if key[0] in (None, table) and record.fields.get(key[1]) is not None]
            row_key = json.dumps([table, record.fields], sort_keys=True, default=str)
            clash = next((key for key, value in mine if value in seen_values[key]), None)
            if row_key in seen_rows:
                dropped.append(Rejected.from_record(record, self.type, "duplicate", "equals an earlier row"))
            elif clash is not None:
                dropped.append(Rejected.from_record(record, self.type, "not_unique",
                                                    f"{clash[1]}: {record.fields[clash[1]]!r} is already used"))
            else:
                seen_rows.add(row_key)
                for key, value in mine:
                    seen_values[key].add(value)
                kept.append(record)
        return FilterResult(kept, dropped)


class RowLeakage(Filter):
    """Drops a synthetic row whose distance to the closest real row is at most `row_distance` (copies_real_row).

    The real rows are the user's real table (`real_data`); without one, nothing is dropped."""

    type = "leakage"
    Params = LeakageParams

    def apply(self, records: Sequence[Record]) -> FilterResult:
        params: LeakageParams = self.params  # type: ignore[assignment]
        real = [r.fields for r in self.context.real_holdout]
        if not real or not records:
            return FilterResult(list(records), [], {"real_rows": len(real)})
        distances = closest_real([r.fields for r in records], real)
        kept, dropped = [], []
        for record, distance in zip(records, distances):
            if distance <= params.row_distance:
                text = "" if params.redact else record.text
                dropped.append(Rejected(id=record.id, stage=self.type, reason="copies_real_row", text=text,
                                        detail=f"distance to the closest real row {distance:.3f} <= {params.row_distance}",
                                        meta={**record.meta, "real_distance": round(float(distance), 4)}))
            else:
                kept.append(record)
        return FilterResult(kept, dropped, {"real_rows": len(real)})
