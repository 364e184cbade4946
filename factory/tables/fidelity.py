"""How close a synthetic table is to the user's real one: SDMetrics' quality report and detection
score, and the distance of each synthetic row to its closest real row (privacy).

- Column shapes: per column, 1 - the Kolmogorov-Smirnov statistic (numbers, dates) or 1 - the total
  variation distance (categories, booleans); 1 is the same distribution.
- Column pair trends: per pair of columns, how well the correlation (or contingency) is kept.
- Detection: 1 - (2 x AUC - 1) of a logistic regression told to separate real from synthetic rows
  (SDMetrics' LogisticDetection); 1 means it cannot tell them apart.
- Privacy: the share of synthetic rows whose Gower distance to the closest real row is at most
  COPY_DISTANCE (near copies), and the median distance.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from factory.tables.distance import closest_real
from factory.tables.schema import ColumnSpec

log = logging.getLogger(__name__)
TABLE = "table"  # the one table's name in SDMetrics' multi-table metadata
COPY_DISTANCE = 0.01  # the leakage filter's default row_distance
_SDTYPES = {"int": "numerical", "float": "numerical", "category": "categorical", "bool": "boolean", "date": "datetime"}


def _metadata(columns: Mapping[str, ColumnSpec], names: Sequence[str]) -> dict[str, Any]:
    described: dict[str, Any] = {}
    for name in names:
        column = columns[name]
        sdtype = _SDTYPES.get(column.type, "categorical" if not column.unique else "id")
        described[name] = {"sdtype": sdtype, **({"datetime_format": "%Y-%m-%d"} if sdtype == "datetime" else {})}
    return {"columns": described}


def _frame(rows: Sequence[Mapping[str, Any]], names: Sequence[str], columns: Mapping[str, ColumnSpec]) -> pd.DataFrame:
    frame = pd.DataFrame([{n: row.get(n) for n in names} for row in rows], columns=list(names))
    for name in names:
        if columns[name].type == "date":
            frame[name] = pd.to_datetime(frame[name], errors="coerce")
        elif columns[name].type in ("int", "float"):
            frame[name] = pd.to_numeric(frame[name], errors="coerce")
    return frame


def _number(value: Any) -> float | None:
    return round(float(value), 4) if value is not None and math.isfinite(float(value)) else None


BINS = 12
TOP_VALUES = 12


def distributions(real: pd.DataFrame, synthetic: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per column, the real and synthetic shares over shared bins (numbers, dates) or values (the rest),
    for the report's chart per column: aggregates only, never a real row."""
    out: dict[str, dict[str, Any]] = {}
    for name in real.columns:
        a, b = real[name].dropna(), synthetic[name].dropna()
        if a.empty or b.empty:
            continue
        if pd.api.types.is_numeric_dtype(a) and not pd.api.types.is_bool_dtype(a) or pd.api.types.is_datetime64_any_dtype(a):
            numbers = (lambda s: s.astype("int64") / 86_400e9) if pd.api.types.is_datetime64_any_dtype(a) else (lambda s: s.astype(float))
            x, y = numbers(a), numbers(b)
            edges = np.linspace(min(x.min(), y.min()), max(x.max(), y.max()), BINS + 1)
            out[name] = {"kind": "date" if pd.api.types.is_datetime64_any_dtype(a) else "number",
                         "edges": [round(float(e), 4) for e in edges],
                         "real": [round(float(v), 4) for v in np.histogram(x, edges)[0] / len(x)],
                         "synthetic": [round(float(v), 4) for v in np.histogram(y, edges)[0] / len(y)]}
        else:
            shares_a, shares_b = a.astype(str).value_counts(normalize=True), b.astype(str).value_counts(normalize=True)
            values = list(dict.fromkeys([*shares_a.index[:TOP_VALUES], *shares_b.index[:TOP_VALUES]]))[:TOP_VALUES]
            out[name] = {"kind": "category", "values": values,
                         "real": [round(float(shares_a.get(v, 0.0)), 4) for v in values],
                         "synthetic": [round(float(shares_b.get(v, 0.0)), 4) for v in values]}
    return out


def fidelity(real: Sequence[Mapping[str, Any]], synthetic: Sequence[Mapping[str, Any]],
             columns: Mapping[str, ColumnSpec]) -> dict[str, Any]:
    """The fidelity section of a table's report (JSON-ready)."""
    names = [n for n in columns if n in real[0]] if real else []
    distances = closest_real([{n: r.get(n) for n in names} for r in synthetic], [{n: r.get(n) for n in names} for r in real])
    result: dict[str, Any] = {
        "real_rows": len(real), "synthetic_rows": len(synthetic), "columns_compared": names,
        "privacy": {"near_copy_distance": COPY_DISTANCE, "near_copies": float(np.mean(distances <= COPY_DISTANCE)),
                    "median_distance": _number(np.median(distances)) if len(distances) else None},
    }
    real_frame, synthetic_frame = _frame(real, names, columns), _frame(synthetic, names, columns)
    result["distributions"] = distributions(real_frame, synthetic_frame)
    metadata = _metadata(columns, names)
    try:
        from sdmetrics.reports import QualityReport
        from sdmetrics.single_table import LogisticDetection
    except ImportError:
        result["note"] = "SDMetrics is not installed: pip install 'dataset-factory[tables]' for shape, trend and detection scores"
        return result
    with warnings.catch_warnings():  # SDMetrics warns about every constant column and small sample
        warnings.simplefilter("ignore")
        report = QualityReport()  # the multi-table report (the single-table one is deprecated): one table here
        report.generate({TABLE: real_frame}, {TABLE: synthetic_frame}, {"tables": {TABLE: metadata}}, verbose=False)
        properties = dict(zip(report.get_properties()["Property"], report.get_properties()["Score"]))
        shapes = report.get_details("Column Shapes")
        try:
            detection = LogisticDetection.compute(real_frame, synthetic_frame, metadata)
        except Exception as exc:  # noqa: BLE001 - a detection failure must not lose the build's other scores
            log.warning("the detection score could not be computed: %s", exc)
            detection = None
    result |= {
        "score": _number(report.get_score()),
        "column_shapes": _number(properties.get("Column Shapes")),
        "column_pair_trends": _number(properties.get("Column Pair Trends")),
        "per_column": {row["Column"]: {"metric": row["Metric"], "score": _number(row["Score"])} for _, row in shapes.iterrows()},
        "detection": _number(detection),
    }
    return result


def card_lines(report: Mapping[str, Any]) -> str:
    """The table section of the dataset card: tables, keys, checks, program, fidelity and privacy, in markdown."""
    tables = report["tables"]
    lines = ["## Table" if len(tables) == 1 else "## Tables", "", f"Made by method `{report['method']}`.", ""]
    lines += ["| table | rows | columns | foreign keys |", "|---|---|---|---|"]
    lines += [f"| {name} | {t['rows']} | {', '.join(t['columns'])} | "
              + (", ".join(f"{c} -> {target}" for c, target in t["foreign_keys"].items()) or "-") + " |" for name, t in tables.items()]
    checks = [(name, c) for name, t in tables.items() for c in t["table_checks"]]
    if checks:
        lines += ["", "| table | table check | holds | values |", "|---|---|---|---|"]
        lines += [f"| {name} | `{c['check']}` | {'yes' if c['passed'] else '**no**'} | "
                  + (", ".join(f"{k} = {v}" for k, v in c["values"].items()) or "-") + " |" for name, c in checks]
    program = report.get("program")
    if program:
        attempts = program["attempts"]
        lines += ["", f"The table program took {len(attempts)} attempt(s); "
                  + ("one was accepted (its output passed the schema and the checks)." if program["accepted"] else "none was accepted.")]
    fid = report.get("fidelity")
    if fid:
        privacy = fid["privacy"]
        lines += ["", f"Compared with the real table ({fid['real_rows']} rows, columns {', '.join(fid['columns_compared'])}):", ""]
        if "score" in fid:
            lines += [f"- SDMetrics quality score {fid['score']}: column shapes {fid['column_shapes']}, "
                      f"column pair trends {fid['column_pair_trends']} (1 = the same as the real table)",
                      f"- detection {fid['detection']} (1 = a classifier cannot tell synthetic rows from real ones)"]
        lines.append(f"- privacy: {privacy['near_copies']:.1%} of synthetic rows are within {privacy['near_copy_distance']} "
                     f"(Gower distance) of a real row; median distance to the closest real row {privacy['median_distance']}")
    return "\n".join(lines) + "\n"
