"""The review page on a large run, measured in headless Chromium.

A small run is built against the loopback server, then its kept.jsonl and rejected.jsonl are replaced by
N synthetic rows (default 100,000: 70% kept, 30% dropped by one of four stages, two labels, three
generators). The page is opened with its map off, and the browser reports:

- first rows: milliseconds from navigation until the list and the count show (goal: under 1,000);
- with --map, the seconds until the 2-D map is drawn (it embeds every row in the background);
- the floor under it, the baseline measured in the same page: fetching and parsing the rows' JSON alone;
- each filter change (status, label, reason, generator, a search, clearing): milliseconds for the page to
  filter all N rows and redraw (goal: under 200);
- a scripted walk-through: 100 rows reviewed with the keyboard (j to move, a / r / l on every other row),
  each decision saved through the server before the next key; the time the page takes, which is what a
  person waits for on top of reading.

    python benchmarks/review_page.py [--rows 100000] [--out review_page.json]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import classification_recipe  # noqa: E402
from loopback_openai import LoopbackOpenAI  # noqa: E402
from test_review_page import _browser, _keys, _select, _wait  # noqa: E402

from factory import build  # noqa: E402
from factory.recipe_file import parse_recipe  # noqa: E402
from factory.review.server import ReviewServer  # noqa: E402

WORDS = ("film critic plot actor scene score light shadow story pacing humour dialogue camera edit music ending "
         "drama comedy thriller warm blunt sharp dull bright slow quick tender brutal clever").split()
STAGES = [("exact_dedup", "exact_duplicate"), ("quality", "too_short"), ("near_dedup", "near_duplicate"),
          ("leakage", "copied_source")]


def synthetic_run(work: Path, rows: int) -> Path:
    """A real run directory (built against the loopback server) whose rows are replaced by `rows` synthetic ones."""
    import os

    os.environ.setdefault("FACTORY_BENCH_KEY", "bench")
    with LoopbackOpenAI() as server:
        data = classification_recipe(server.base_url, generate={"per_label": 3})
        data["generators"][0]["api_key_env"] = "FACTORY_BENCH_KEY"
        build(parse_recipe(data, str(work / "r.yaml")), work / "run", progress=False)
    run = work / "run"
    rng = random.Random(0)
    kept, dropped = [], []
    for i in range(rows):
        label = rng.choice(["positive", "negative"])
        text = " ".join(rng.choices(WORDS, k=rng.randint(8, 30))) + f" #{i}"
        meta = {"generator": rng.choice(["gpt", "qwen", "smol"]), "index": i, "axis_product": rng.choice(["lamp", "kettle"]),
                "confidence": round(rng.random(), 3), "weight": 1.0}
        if rng.random() < 0.7:
            kept.append({"fields": {"text": text}, "label": label, "id": f"row{i:06d}", "meta": meta})
        else:
            stage, reason = rng.choice(STAGES)
            dropped.append({"id": f"row{i:06d}", "stage": stage, "reason": reason, "text": text, "label": label,
                            "detail": "", "meta": meta})
    (run / "kept.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept))
    (run / "rejected.jsonl").write_text("".join(json.dumps(r) + "\n" for r in dropped))
    return run


def measure(run: Path, rows: int, with_map: bool = False) -> dict[str, Any]:
    started = time.perf_counter()
    server = ReviewServer(run, with_map=with_map, who="bench").start()
    driver = _browser()
    out: dict[str, Any] = {"rows": rows}
    try:
        driver.get(server.url)
        _wait(driver, f"document.getElementById('count').textContent === '{rows} of {rows} rows'", timeout=120)
        out["first_rows_ms"] = round(driver.execute_script("return window.reviewTimings.firstRows"), 1)
        if with_map:  # the map is computed in the background: seconds from the server's start until it is drawn
            _wait(driver, "document.getElementById('map-note').textContent.startsWith('map:')", timeout=1800)
            out["map_ready_s"] = round(time.perf_counter() - started, 1)
        out["fetch_and_parse_ms"] = round(driver.execute_async_script(
            "const done = arguments[0]; const t = performance.now();"
            "fetch('api/rows', {headers: {'X-Review-Token': TOKEN}, cache: 'no-store'}).then(r => r.json())"
            ".then(() => done(performance.now() - t));"), 1)
        filters: dict[str, float] = {}
        for name, (element, value) in {"status=rejected": ("f-status", "rejected"), "label=positive": ("f-label", "positive"),
                                       "reason=near_duplicate": ("f-reason", "near_duplicate"),
                                       "generator=qwen": ("f-generator", "qwen"), "clear": (None, None)}.items():
            if element is None:
                driver.execute_script("for (const id of ['f-status','f-label','f-reason','f-generator']) "
                                      "document.getElementById(id).value = '';")
                _select(driver, "f-status", "")
            else:
                _select(driver, element, value)
            filters[name] = round(driver.execute_script("return window.reviewTimings.lastFilterMs"), 1)
        driver.execute_script("const s = document.getElementById('search'); s.value = 'tender brutal';"
                              "s.dispatchEvent(new Event('input')); s.value = ''; s.blur();")
        filters["search 'tender brutal'"] = round(driver.execute_script("return window.reviewTimings.lastFilterMs"), 1)
        _select(driver, "f-status", "")
        out["filter_ms"] = filters
        driver.execute_script("document.getElementById('list').focus()")
        started = time.perf_counter()
        for i in range(100):
            key = "arl"[i % 3] if i % 2 == 0 else "j"
            status_before = driver.execute_script("return document.getElementById('status').textContent")
            _keys(driver, key)
            if key != "j":
                _wait(driver, f"document.getElementById('status').textContent !== {json.dumps(status_before)}")
        out["walk_100_rows_s"] = round(time.perf_counter() - started, 2)
        out["decisions_logged"] = sum(1 for _ in (run / "decisions.jsonl").open())
    finally:
        driver.quit()
        server.shutdown()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--map", action="store_true", help="with the 2-D map (embeds every row: minutes at 100k)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = synthetic_run(Path(tmp), args.rows)
        result = measure(run, args.rows, with_map=args.map)
    print(f"{result['rows']:,} rows: first rows in {result['first_rows_ms']:.0f} ms (fetching and parsing the JSON alone: "
          f"{result['fetch_and_parse_ms']:.0f} ms)")
    if "map_ready_s" in result:
        print(f"  the map drawn {result['map_ready_s']} s after the server started (every row embedded)")
    for name, ms in result["filter_ms"].items():
        print(f"  filter {name}: {ms:.1f} ms")
    print(f"  100 rows walked with the keyboard, {result['decisions_logged']} decisions saved: {result['walk_100_rows_s']} s")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
