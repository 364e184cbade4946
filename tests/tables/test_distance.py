"""tables.distance.closest_real: Gower distance to the closest real row, as its docstring defines it."""

from __future__ import annotations

import pytest

from factory.tables.distance import closest_real


def test_per_row_distance_counts_every_column_and_constant_columns_by_their_gap() -> None:
    real = [{"x": 1.0, "c": "a", "t": "free text one"}, {"x": 1.0, "c": "b", "t": "two"}]
    synthetic = [{"x": 1.5, "c": "a", "t": "free text one"}, {"x": 1.0, "c": "c", "t": "new"}]
    # x has one real value (range 0): its gap is |a - b| (0.5), not 1; the text column counts too.
    assert closest_real(synthetic, real).tolist() == pytest.approx([0.5 / 3, 2 / 3])


def test_ranges_dates_and_nulls() -> None:
    real = [{"n": 0, "d": "2024-01-01"}, {"n": 10, "d": "2024-01-11"}]
    synthetic = [{"n": 5, "d": "2024-01-01"}, {"n": None, "d": None}, {"n": 40, "d": "2024-01-11"}]
    assert closest_real(synthetic, real).tolist() == pytest.approx([0.25, 1.0, 0.5])
    assert closest_real(synthetic, []).tolist() == [1.0, 1.0, 1.0]
