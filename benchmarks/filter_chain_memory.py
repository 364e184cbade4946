"""Peak memory and speed of the full filter chain at 10k and 100k rows.

Each size runs in a fresh child process (peak RSS = the child's ru_maxrss). The baseline, measured
in the same run, is a child that only loads the embedding model and embeds 1,000 texts: the fixed
cost every chain pays. Growth must be roughly linear in the rows beyond that fixed cost (no n x n
similarity matrix), and the chain must embed each distinct text exactly once.

    python benchmarks/filter_chain_memory.py [--rows 10000,100000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

CHAIN = [
    {"type": "exact_dedup"}, {"type": "quality", "min_words": 5}, {"type": "near_dedup"},
    {"type": "semantic_dedup"}, {"type": "conflicts"}, {"type": "leakage"},
    {"type": "confidence", "min_prob": 0.5}, {"type": "critic", "drop_fraction": 0.1},
    {"type": "rebalance", "clusters_per_label": "auto"},
]


def child(rows: int) -> dict:
    from dedup_data import make_dedup_set

    from factory.embeddings import Embedder
    from factory.filters import build_filter
    from factory.filters.base import FilterContext
    from factory.recipe_file import parse_recipe

    embedder = Embedder()
    if rows == 0:  # the baseline: model loaded, 1,000 texts embedded
        data = make_dedup_set(1000, seed=1)
        embedder.encode([r.text for r in data.rows])
        return {"rows": 0, "seconds": 0.0}
    data = make_dedup_set(rows, seed=0)
    real = make_dedup_set(2000, seed=99).rows  # stands in for the user's real rows
    context = FilterContext(seed=0, labels=("positive", "negative"), real_train=real[:16], real_holdout=real[16:],
                            embedder=embedder)
    spec = parse_recipe({"name": "m", "task": "classification", "filters": CHAIN,
                         "labels": {"positive": {"description": "p"}, "negative": {"description": "n"}}})
    filters = [build_filter(p).fit(context) for p in spec.filters]  # type: ignore[arg-type]
    records = data.rows
    started = time.perf_counter()
    funnel = []
    for stage in filters:
        before = len(records)
        t = time.perf_counter()
        records = stage.apply(records).kept
        funnel.append((stage.type, before, len(records), round(time.perf_counter() - t, 1)))
    seconds = time.perf_counter() - started
    distinct = len({r.text for r in data.rows} | {r.text for r in real})
    return {"rows": rows, "seconds": seconds, "funnel": funnel, "embedded": embedder.encoded, "distinct_texts": distinct}


def run_child(rows: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", str(rows)], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", default="10000,100000")
    parser.add_argument("--child", type=int, default=None)
    args = parser.parse_args()
    if args.child is not None:
        result = child(args.child)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    base = run_child(0)
    print(f"baseline (model loaded, 1,000 texts embedded): peak RSS {base['peak_rss_mb']:.0f} MB")
    results = []
    for rows in (int(r) for r in args.rows.split(",")):
        r = run_child(rows)
        results.append(r)
        print(f"{rows:>7} rows: peak RSS {r['peak_rss_mb']:.0f} MB (+{r['peak_rss_mb'] - base['peak_rss_mb']:.0f} MB over "
              f"baseline), chain {r['seconds']:.0f} s = {rows / r['seconds']:.0f} rows/s, embedded {r['embedded']} "
              f"of {r['distinct_texts']} distinct texts (each at most once: "
              f"{'PASS' if r['embedded'] <= r['distinct_texts'] else 'FAIL'})")
        print("         " + "  ".join(f"{name} {a}->{b} ({s}s)" for name, a, b, s in r["funnel"]))
    if len(results) >= 2:
        small, large = results[0], results[-1]
        growth = (large["peak_rss_mb"] - base["peak_rss_mb"]) / max(small["peak_rss_mb"] - base["peak_rss_mb"], 1)
        scale = large["rows"] / small["rows"]
        print(f"memory growth over baseline: x{growth:.1f} for x{scale:.0f} rows "
              f"({'roughly linear' if growth <= 1.5 * scale else 'SUPER-LINEAR'})")


if __name__ == "__main__":
    main()
