"""A table's columns: their types and constraints, and the check of one row against them.

A row is checked value by value and never raises: the first problem becomes the row's reason
(`wrong_type`, `not_null`, `out_of_range`, `unknown_category`, `bad_pattern`, `missing_column`,
`unknown_column`), with a detail that names the column and the value. Dates are ISO strings
(YYYY-MM-DD) in the rows and in the dataset, so they compare and sort as text.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from factory.spec import Strict

ColumnType = Literal["int", "float", "string", "category", "date", "bool"]
NUMERIC: frozenset[str] = frozenset({"int", "float"})
_TRUE, _FALSE = {"true", "yes", "1"}, {"false", "no", "0"}


class ColumnSpec(Strict):
    """One column of a table recipe: its type, what it holds, and the constraints every value meets."""

    type: ColumnType = Field(description="int, float, string, category, date (YYYY-MM-DD) or bool.")
    description: str = Field("", description="What the column holds (goes into the prompt).")
    min: float | str | None = Field(None, description="Least value: a number (int, float) or a date (YYYY-MM-DD).")
    max: float | str | None = Field(None, description="Greatest value: a number (int, float) or a date (YYYY-MM-DD).")
    values: list[str] | None = Field(None, min_length=1, description="The allowed values (required for category).")
    unique: bool = Field(False, description="No two rows share a value (a later duplicate is dropped as not_unique).")
    nullable: bool = Field(False, description="The value may be missing (null); by default it may not.")
    pattern: str | None = Field(None, description="A regular expression every string value matches in full.")

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return pattern

    @model_validator(mode="after")
    def _fits_type(self) -> ColumnSpec:
        if self.type == "category" and not self.values:
            raise ValueError("a category column needs `values:` (its allowed values)")
        if self.values is not None and self.type not in ("category", "string"):
            raise ValueError(f"values: only string and category columns take allowed values, not {self.type}")
        if self.pattern is not None and self.type != "string":
            raise ValueError(f"pattern: only string columns take a pattern, not {self.type}")
        for bound in ("min", "max"):
            value = getattr(self, bound)
            if value is None:
                continue
            if self.type in NUMERIC and not isinstance(value, (int, float)):
                raise ValueError(f"{bound}: a {self.type} column's bound is a number, got {value!r}")
            if self.type == "date":
                if not isinstance(value, str) or parse_date(value) is None:
                    raise ValueError(f"{bound}: a date column's bound is a date YYYY-MM-DD, got {value!r}")
            elif self.type not in NUMERIC:
                raise ValueError(f"{bound}: only int, float and date columns take bounds, not {self.type}")
        if self.min is not None and self.max is not None and str(self.type) != "date" and self.min > self.max:  # type: ignore[operator]
            raise ValueError(f"min ({self.min}) is above max ({self.max})")
        if self.type == "date" and self.min and self.max and str(self.min) > str(self.max):
            raise ValueError(f"min ({self.min}) is after max ({self.max})")
        return self

    def describe(self) -> str:
        """The column for a prompt: type, description and constraints, in a line."""
        parts = [self.type]
        if self.values:
            parts.append("one of " + ", ".join(self.values))
        if self.min is not None or self.max is not None:
            parts.append(f"from {self.min if self.min is not None else '-inf'} to {self.max if self.max is not None else 'inf'}")
        if self.pattern:
            parts.append(f"matching /{self.pattern}/")
        if self.unique:
            parts.append("unique")
        parts.append("may be null" if self.nullable else "never null")
        return "; ".join(parts) + (f". {self.description}" if self.description else "")


@dataclass(frozen=True)
class RowProblem:
    """Why a row was refused: a reason from the module's list and a detail naming the column."""

    reason: str
    detail: str


def parse_date(value: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(value.strip()[:10])
    except ValueError:
        return None


def _coerce(spec: ColumnSpec, value: Any) -> Any:
    """The value as the column's type, or raises ValueError: lenient about spelling, strict about meaning
    ("3" is the int 3, 3.0 is 3, 3.5 is not an int; "yes" is True)."""
    kind = spec.type
    if kind == "int":
        if isinstance(value, bool):
            raise ValueError
        number = float(value) if isinstance(value, str) else value
        if not isinstance(number, (int, float)) or not math.isfinite(number) or number != int(number):
            raise ValueError
        return int(number)
    if kind == "float":
        if isinstance(value, bool):
            raise ValueError
        number = float(value)
        if not math.isfinite(number):
            raise ValueError
        return number
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, str)) and str(value).strip().lower() in _TRUE | _FALSE:
            return str(value).strip().lower() in _TRUE
        raise ValueError
    if kind == "date":
        day = parse_date(value) if isinstance(value, str) else value if isinstance(value, dt.date) else None
        if day is None:
            raise ValueError
        return day.isoformat()
    if isinstance(value, (dict, list)):
        raise ValueError
    return str(value).strip() if not isinstance(value, float) or value != int(value) else str(int(value))


def check_row(columns: Mapping[str, ColumnSpec], raw: Mapping[str, Any]) -> dict[str, Any] | RowProblem:
    """`raw` as a typed row in the schema's column order, or the first problem found."""
    extra = [name for name in raw if name not in columns]
    if extra:
        return RowProblem("unknown_column", f"not in the schema: {', '.join(map(str, extra[:5]))}")
    row: dict[str, Any] = {}
    for name, spec in columns.items():
        if name not in raw:
            return RowProblem("missing_column", f"{name}: the row has no value")
        value = raw[name]
        if value is None or (isinstance(value, float) and math.isnan(value)) or (isinstance(value, str) and not value.strip()):
            if not spec.nullable:
                return RowProblem("not_null", f"{name}: null, and the column is not nullable")
            row[name] = None
            continue
        try:
            value = _coerce(spec, value)
        except (TypeError, ValueError, OverflowError):
            return RowProblem("wrong_type", f"{name}: {str(value)[:40]!r} is not a {spec.type}")
        if spec.min is not None and value < (spec.min if spec.type != "date" else str(spec.min)):
            return RowProblem("out_of_range", f"{name}: {value} is below the minimum {spec.min}")
        if spec.max is not None and value > (spec.max if spec.type != "date" else str(spec.max)):
            return RowProblem("out_of_range", f"{name}: {value} is above the maximum {spec.max}")
        if spec.values is not None and value not in spec.values:
            return RowProblem("unknown_category", f"{name}: {str(value)[:40]!r} is not one of {spec.values[:8]}")
        if spec.pattern is not None and not re.fullmatch(spec.pattern, value):
            return RowProblem("bad_pattern", f"{name}: {value[:40]!r} does not match /{spec.pattern}/")
        row[name] = value
    return row


def coerce_value(spec: ColumnSpec, value: Any) -> Any:
    """`value` as the column's type, or None when it is missing or does not fit (for reading a real table)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if hasattr(value, "item"):  # a numpy scalar
        value = value.item()
    if hasattr(value, "date") and not isinstance(value, dt.date):  # a pandas Timestamp
        value = value.date()
    try:
        return _coerce(spec, value)
    except (TypeError, ValueError, OverflowError):
        return None


def day_numbers(values: Any) -> Any:
    """Dates (YYYY-MM-DD strings, timestamps) as day ordinals in a float pandas Series, NaN where there is none."""
    import pandas as pd

    stamps = pd.to_datetime(pd.Series(list(values), dtype=object), errors="coerce")
    return stamps.map(lambda t: float(t.toordinal()) if pd.notna(t) else math.nan).astype(float)
