"""Distance to the closest real record (DCR): how near each synthetic row is to a real one.

Gower's distance, in [0, 1]: the mean over columns of |a - b| / the real column's range for numbers
and dates (capped at 1), and 0 or 1 for equal or different categories, strings and booleans (two
nulls are equal). 0 is an exact copy of a real row.

Hand-written rather than SDMetrics (0.32, the `tables` extra), checked: its public DCR metrics,
`sdmetrics.single_table.DCRBaselineProtection` and `DCROverfittingProtection`, return a score
(`compute`) or medians of the distances (`compute_breakdown`), never a distance per row, and the
leakage filter drops rows one by one on theirs. The per-row helper behind them,
`sdmetrics.single_table.privacy.dcr_utils.calculate_dcr`, is not public API and gives other
numbers: a real column with one value counts any difference as 1 (here |a - b|, capped at 1), and
columns whose sdtype is not numerical, datetime, categorical or boolean (ids, free text) are left
out (here every column counts). On two real rows and two synthetic ones that differ only in those
ways it gives [0.5, 0.5] where this gives [0.167, 0.667]; it also cross-joins pandas frames in
1000-row chunks where this is a numpy array per CHUNK.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from factory.tables.schema import day_numbers

CHUNK = 256  # synthetic rows compared at once (a CHUNK x real rows x columns array)


_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")


def _as_numbers(values: Sequence[Any]) -> np.ndarray | None:
    """Numbers, or dates as day ordinals, with nulls as NaN; None for any other column."""
    present = [v for v in values if v is not None]
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return np.array([np.nan if v is None else float(v) for v in values])
    if all(isinstance(v, str) and _DATE.match(v) for v in present):
        return day_numbers(values).to_numpy(float)
    return None


def closest_real(synthetic: Sequence[Mapping[str, Any]], real: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Each synthetic row's Gower distance to its closest real row, over the synthetic rows' columns
    (all 1.0 without real rows). A column is numeric when every value in both is a number or a date."""
    if not real or not synthetic:
        return np.ones(len(synthetic))
    parts: list[tuple[np.ndarray, np.ndarray, bool]] = []  # (synthetic, real, numeric) per column
    for name in synthetic[0]:
        ours, theirs = [r.get(name) for r in synthetic], [r.get(name) for r in real]
        a, b = _as_numbers(ours), _as_numbers(theirs)
        if a is not None and b is not None:
            span = np.nanmax(b) - np.nanmin(b) if np.isfinite(b).any() else 0.0
            scale = span if span > 0 else 1.0
            parts.append((a / scale, b / scale, True))
        else:
            codes = {v: i for i, v in enumerate(dict.fromkeys(map(str, theirs + ours)))}
            parts.append((np.array([codes[str(v)] for v in ours], float), np.array([codes[str(v)] for v in theirs], float), False))
    best = np.empty(len(synthetic))
    for start in range(0, len(synthetic), CHUNK):
        total = np.zeros((min(CHUNK, len(synthetic) - start), len(real)))
        for a, b, numeric in parts:
            left, right = a[start:start + CHUNK, None], b[None, :]
            if numeric:
                gap = np.minimum(np.abs(left - right), 1.0)
                both_null, one_null = np.isnan(left) & np.isnan(right), np.isnan(left) ^ np.isnan(right)
                gap = np.where(both_null, 0.0, np.where(one_null, 1.0, gap))
            else:
                gap = (left != right).astype(float)
            total += gap
        best[start:start + CHUNK] = total.min(axis=1) / len(parts)
    return best
