"""Table recipes with the packaged default model: how many rows survive, at what cost, and how close
the table is to the real one, next to baselines scored by the same code in the same run.

For each method (rows, program) the recipe is built with `factory build`; the run's own fidelity
report (SDMetrics shapes / trends / detection, near copies of real rows) and its table checks are
printed with rows kept per request and seconds per kept row. Baselines, same row count, same scoring:
- real half: half of the real table scored against the other half (the ceiling);
- marginals: each column drawn independently from the real column (shapes right, trends lost);
- uniform: each value uniform within the schema's range or values (what a schema alone gives).

    python benchmarks/table_fidelity.py [--recipe recipes/restaurant-tips.yaml] [--rows 100]
        [--methods rows,program] [--work /tmp/table-fidelity]
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import time
from pathlib import Path
from typing import Any

from factory import build, load_recipe
from factory.tables.fidelity import fidelity
from factory.tasks.table import TableSpec, read_real_table


def baseline_rows(spec: TableSpec, real: list[dict[str, Any]], n: int, how: str, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    if how == "marginals":
        return [{name: rng.choice(real)[name] for name in spec.columns} for _ in range(n)]
    rows = []
    for _ in range(n):
        row: dict[str, Any] = {}
        for name, column in spec.columns.items():
            if column.values:
                row[name] = rng.choice(column.values)
            elif column.type in ("int", "float"):
                low = column.min if column.min is not None else 0
                high = column.max if column.max is not None else low + 100
                row[name] = rng.randint(int(low), int(high)) if column.type == "int" else round(rng.uniform(low, high), 2)  # type: ignore[arg-type]
            elif column.type == "bool":
                row[name] = rng.random() < 0.5
            else:
                row[name] = None
        rows.append(row)
    return rows


def model_seconds(run_dir: Path) -> float:
    """Seconds the generator spent on the run's finished requests, as the request cache recorded them."""
    with sqlite3.connect(run_dir / "requests.sqlite") as db:
        return sum(json.loads(c).get("seconds", 0.0) for (c,) in db.execute("SELECT completion FROM requests"))


def summary(report: dict[str, Any]) -> str:
    privacy = report["privacy"]
    return (f"shapes {report.get('column_shapes')}, trends {report.get('column_pair_trends')}, detection "
            f"{report.get('detection')}, near copies {privacy['near_copies']:.1%}, median distance {privacy['median_distance']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", type=Path, default=Path("recipes/restaurant-tips.yaml"))
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--methods", default="rows,program")
    parser.add_argument("--work", type=Path, default=Path("/tmp/table-fidelity"))
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args()

    results: dict[str, Any] = {}
    spec = load_recipe(args.recipe)
    real = read_real_table(spec)  # type: ignore[arg-type]
    print(f"{args.recipe}: {len(real)} real rows, {args.rows} synthetic rows wanted per method")
    half = len(real) // 2
    shuffled = random.Random(0).sample(real, len(real))
    for name, rows in (("real half vs other half", shuffled[:half]),
                       ("marginals (independent columns)", baseline_rows(spec, real, args.rows, "marginals", 1)),
                       ("uniform within the schema", baseline_rows(spec, real, args.rows, "uniform", 2))):
        reference = shuffled[half:] if name.startswith("real") else real
        report = fidelity(reference, rows, spec.columns)  # type: ignore[attr-defined]
        results[name] = report
        print(f"  baseline {name:34s} {summary(report)}")
    for method in args.methods.split(","):
        spec = load_recipe(args.recipe)
        spec.method = method  # type: ignore[attr-defined]
        spec.resize("--count", args.rows)
        started = time.time()
        result = build(spec, args.work / method, progress=False)
        seconds = time.time() - started
        manifest = result.manifest
        report = manifest.kind_report or {}
        requests = sum(g["requests"] for g in manifest.generators)
        generated_s = model_seconds(args.work / method)  # of every request, also those a cached re-run did not send
        parse = manifest.funnel[0]
        line = (f"  {method:8s} status {manifest.status}, {manifest.rows} rows from {requests} requests "
                f"({parse.kept}/{parse.rows_in} parsed rows valid), model time {generated_s:.0f} s "
                f"({generated_s / max(manifest.rows, 1):.1f} s per kept row), wall {seconds:.0f} s")
        print(line)
        checks = ", ".join(f"{c['check']}: {'holds' if c['passed'] else 'BROKEN'} {c['values']}"
                           for table in report.get("tables", {}).values() for c in table["table_checks"])
        if checks:
            print(f"           table checks: {checks}")
        if report.get("program"):
            attempts = [(a["repairs"], a["error"].split(":")[0][:40] or "accepted") for a in report["program"]["attempts"]]
            print(f"           program attempts (repairs, outcome): {attempts}")
        if report.get("fidelity"):
            print(f"           {summary(report['fidelity'])}")
        results[method] = {"status": manifest.status, "rows": manifest.rows, "requests": requests, "model_seconds": generated_s,
                           "parsed": parse.rows_in, "valid": parse.kept, "report": report}
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
