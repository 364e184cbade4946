"""Column constraints and the check language: every refusal has its reason, nothing is executed."""

from __future__ import annotations

import pandas as pd
import pytest
from pydantic import ValidationError

from factory.tables.checks import Check, parse_checks
from factory.tables.schema import ColumnSpec, RowProblem, check_row

COLUMNS = {
    "id": ColumnSpec(type="string", unique=True, pattern=r"H\d{3}"),
    "price": ColumnSpec(type="float", min=1000, max=2_000_000),
    "bedrooms": ColumnSpec(type="int", min=1, max=9),
    "city": ColumnSpec(type="category", values=["Lyon", "Nantes"]),
    "built": ColumnSpec(type="date", min="1900-01-01"),
    "garden": ColumnSpec(type="bool", nullable=True),
}
GOOD = {"id": "H001", "price": "250000", "bedrooms": 3.0, "city": "Lyon", "built": "1990-05-01", "garden": "yes"}


def test_a_good_row_is_typed_in_schema_order() -> None:
    row = check_row(COLUMNS, dict(reversed(GOOD.items())))
    assert row == {"id": "H001", "price": 250000.0, "bedrooms": 3, "city": "Lyon", "built": "1990-05-01", "garden": True}
    assert list(row) == list(COLUMNS)  # type: ignore[arg-type]
    assert check_row(COLUMNS, {**GOOD, "garden": None})["garden"] is None  # type: ignore[index]


@pytest.mark.parametrize(("change", "reason"), [
    ({"bedrooms": 2.5}, "wrong_type"), ({"bedrooms": "three"}, "wrong_type"), ({"price": True}, "wrong_type"),
    ({"built": "last year"}, "wrong_type"), ({"garden": "maybe"}, "wrong_type"), ({"city": ["Lyon"]}, "wrong_type"),
    ({"price": 10}, "out_of_range"), ({"bedrooms": 12}, "out_of_range"), ({"built": "1850-01-01"}, "out_of_range"),
    ({"city": "Paris"}, "unknown_category"), ({"id": "X1"}, "bad_pattern"), ({"price": None}, "not_null"),
    ({"price": ""}, "not_null"), ({"colour": "red"}, "unknown_column"),
])
def test_each_bad_value_is_refused_with_its_reason(change: dict, reason: str) -> None:
    problem = check_row(COLUMNS, {**GOOD, **change})
    assert isinstance(problem, RowProblem) and problem.reason == reason
    assert next(iter(change)) in problem.detail


def test_a_missing_column_is_named() -> None:
    problem = check_row(COLUMNS, {k: v for k, v in GOOD.items() if k != "city"})
    assert problem == RowProblem("missing_column", "city: the row has no value")


@pytest.mark.parametrize(("fields", "message"), [
    ({"type": "category"}, "needs `values:`"),
    ({"type": "int", "values": ["a"]}, "only string and category"),
    ({"type": "int", "pattern": "x"}, "only string columns"),
    ({"type": "string", "pattern": "("}, "not a valid regular expression"),
    ({"type": "date", "min": "yesterday"}, "a date YYYY-MM-DD"),
    ({"type": "float", "min": 5, "max": 1}, "is above max"),
    ({"type": "bool", "min": 0}, "only int, float and date"),
])
def test_a_bad_column_spec_says_why(fields: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(")):
        ColumnSpec(**fields)


def test_row_checks_hold_or_break_per_row_and_nulls_are_unknown() -> None:
    cheap_big, studio = parse_checks(["not (price < 100000 and bedrooms > 4)", "bedrooms >= 2 or city in ['Nantes']"], COLUMNS)
    assert not cheap_big.table_level
    assert cheap_big.holds({"price": 90000.0, "bedrooms": 3}) and not cheap_big.holds({"price": 90000.0, "bedrooms": 5})
    assert studio.holds({"bedrooms": 1, "city": "Nantes"}) and not studio.holds({"bedrooms": 1, "city": "Lyon"})
    dated = Check.parse("year(built) >= 1950 and price / bedrooms > 1000", COLUMNS)
    assert dated.holds({"built": "1990-01-01", "price": 5000.0, "bedrooms": 2})
    assert dated.holds({"built": None, "price": 5000.0, "bedrooms": 2})  # unknown, not broken
    assert not Check.parse("price / (bedrooms - 1) > 0", COLUMNS).holds({"price": 1.0, "bedrooms": 1})  # division by zero breaks it


def test_table_checks_measure_the_whole_table() -> None:
    table = pd.DataFrame({"price": [1e5, 2e5, 3e5, 4e5], "bedrooms": [1, 2, 3, 4], "city": ["Lyon", "Lyon", "Nantes", "Lyon"],
                          "garden": [True, False, None, True]})
    trend = Check.parse("spearman(bedrooms, price) >= 0.9", COLUMNS)
    assert trend.table_level
    assert trend.measure(table) == (True, {"spearman(bedrooms, price)": 1.0})
    assert Check.parse("distinct(city) >= 3", COLUMNS).measure(table) == (False, {"distinct(city)": 2.0})
    assert Check.parse("share(garden) >= 0.5 and mean(price) < 300000", COLUMNS).measure(table)[0]


@pytest.mark.parametrize(("text", "message"), [
    ("__import__('os').system('rm -rf ~')", "only plain calls"),
    ("__import__('os')", "unknown function __import__"),
    ("price.__class__", "Attribute is not part"),
    ("(lambda: 1)()", "only plain calls"),
    ("[x for x in price]", "ListComp is not part"),
    ("prise > 0", "unknown column 'prise'"),
    ("price >", "not an expression"),
    ("spearman(price, bedrooms) > 0.5 and price > 0", "mixes whole-column functions"),
    ("mean(price * 2) > 1", "takes 1 column name"),
    ("open('/etc/passwd')", "unknown function open"),
    ("price > b'x'", "literal b'x'"),
    ("price if price else 1", "IfExp is not part"),
])
def test_anything_outside_the_language_is_refused_before_it_runs(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[").replace(".", r"\.")):
        Check.parse(text, COLUMNS)
