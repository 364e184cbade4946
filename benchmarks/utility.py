"""Does the synthetic data help? Macro-F1 on held-out real Rotten Tomatoes rows, four training sets.

Builds recipes/movie-reviews.yaml with its generators (the local default: Qwen2.5-Coder-1.5B) through
its whole filter chain (a re-run reuses the request cache), then for each seed draws 8 real rows per
label from the real pool (never from the validation rows) and trains the linear evaluator (logistic
regression on frozen MiniLM embeddings, as in DESIGN.md's reference table) on:

    real only | synthetic+real before filtering | synthetic+real after filtering | synthetic only

and scores it on a fixed set of held-out real rows (default 2,000). Goals: after-filtering beats
real-only by >= 5 points and beats before-filtering by >= 3 points.

Then it says why the numbers are what they are: the ceiling (the linear evaluator trained on
--ceiling real rows from outside the validation set), how often that classifier agrees with the
synthetic labels (label noise), the parse rejections (refusals, bad JSON), the duplicate rate and
the length of synthetic against real texts (style).

    python benchmarks/utility.py [--per-label 100] [--seeds 0,1,2] [--validation 2000] [--evaluator linear]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections import defaultdict
from pathlib import Path

from factory import build
from factory.data.real import load_real_rows, split_real
from factory.embeddings import Embedder
from factory.eval.evaluators import build_evaluator
from factory.eval.metrics import mean_spread, scores
from factory.records import Record
from factory.run.manifest import Manifest
from factory.run.store import RunStore
from factory.spec import load_recipe

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "movie-reviews.yaml"


def stage_rows(run_dir: Path) -> dict[str, list[Record]]:
    stages = json.loads((run_dir / "stages.json").read_text())
    with RunStore(run_dir) as store:
        by_id = {r.id: r for r in store.records()}
    return {name: [by_id[i] for i in ids] for name, ids in stages.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", type=Path, default=RECIPE)
    parser.add_argument("--per-label", type=int, default=None, help="override generate.per_label")
    parser.add_argument("--run-dir", type=Path, default=None, help="default: runs/<recipe name>")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--real-per-label", type=int, default=8)
    parser.add_argument("--validation", type=int, default=2000)
    parser.add_argument("--evaluator", default="linear")
    parser.add_argument("--ceiling", type=int, default=3000, help="real rows for the ceiling classifier (0: skip)")
    args = parser.parse_args()

    spec = load_recipe(args.recipe)
    if args.per_label:
        spec.generate.per_label = args.per_label
    started = time.perf_counter()
    result = build(spec, args.run_dir, progress=True)
    build_s = time.perf_counter() - started
    stages = stage_rows(result.run_dir)
    before, after = stages["parse"], stages["final"]

    labels = list(spec.labels)
    real = load_real_rows(spec)
    recipe_split = split_real(real, spec.real_data.train_per_label, spec.seed)
    # Validation: a fixed sample of rows that no prompt or filter ever saw.
    validation = random.Random("validation").sample(sorted(recipe_split.validation, key=lambda r: r.id),
                                                    min(args.validation, len(recipe_split.validation)))
    held = {r.id for r in validation}
    pool: dict[str, list[Record]] = defaultdict(list)
    for row in real:
        if row.id not in held:
            pool[row.label or ""].append(row)
    gold = [r.label or "" for r in validation]
    # The run's cache already holds every real row: the leakage filter embedded them.
    embedder = Embedder(cache=result.run_dir / "embeddings.sqlite")
    evaluator = build_evaluator(args.evaluator, None, embedder)

    table: dict[str, list[float]] = defaultdict(list)
    for seed in (int(s) for s in args.seeds.split(",")):
        rng = random.Random(f"utility/{seed}")
        few = [r for label in labels for r in rng.sample(sorted(pool[label], key=lambda r: r.id), args.real_per_label)]
        for name, train in (("real only", few), ("synthetic+real, before filtering", [*before, *few]),
                            ("synthetic+real, after filtering", [*after, *few]), ("synthetic only (filtered)", after)):
            predicted = evaluator.predict(train, validation, labels, seed=seed).predicted
            table[name].append(scores(predicted, gold, labels)["macro_f1"])

    print(f"\nrecipe {args.recipe.name}: {len(before)} parsed rows before filtering, {len(after)} after "
          f"(build {build_s:.0f} s, {result.manifest.budget.used} requests)")
    print(f"evaluator {args.evaluator}; {args.real_per_label} real rows per label; {len(validation)} held-out real rows; "
          f"seeds {args.seeds}\n")
    summary = {name: mean_spread(values) for name, values in table.items()}
    for name, s in summary.items():
        print(f"  {name:<36} macro-F1 {s['mean']:.3f} ± {s['std']:.3f}  (runs: {', '.join(f'{v:.3f}' for v in table[name])})")
    real_only = summary["real only"]["mean"]
    filtered = summary["synthetic+real, after filtering"]["mean"]
    unfiltered = summary["synthetic+real, before filtering"]["mean"]
    print(f"\n  after filtering vs real only:        {100 * (filtered - real_only):+.1f} points (goal >= +5)"
          f"  {'PASS' if filtered - real_only >= 0.05 else 'FAIL'}")
    print(f"  after filtering vs before filtering: {100 * (filtered - unfiltered):+.1f} points (goal >= +3)"
          f"  {'PASS' if filtered - unfiltered >= 0.03 else 'FAIL'}")
    if args.ceiling:
        diagnose(result.manifest, pool, validation, gold, labels, before, after, embedder, args.ceiling)


def diagnose(manifest: Manifest, pool: dict[str, list[Record]], validation: list[Record], gold: list[str],
             labels: list[str], before: list[Record], after: list[Record], embedder: Embedder, n_real: int) -> None:
    """Why the gain is what it is: ceiling, label noise, refusals, duplicates, style."""
    rng = random.Random("ceiling")
    per_label = n_real // len(labels)
    ceiling_rows = [r for label in labels
                    for r in rng.sample(sorted(pool[label], key=lambda r: r.id), min(per_label, len(pool[label])))]
    linear = build_evaluator("linear", None, embedder)

    def predict(rows: list[Record]) -> list[str]:
        return linear.predict(ceiling_rows, rows, labels, seed=0).predicted

    ceiling = scores(predict(validation), gold, labels)["macro_f1"]
    print(f"\nwhy: the linear evaluator on {len(ceiling_rows)} real rows scores {ceiling:.3f} (the ceiling here)")

    def agreement(rows: list[Record]) -> str:
        predicted = predict(rows)
        by_label = {label: [p == label for p, r in zip(predicted, rows) if r.label == label] for label in labels}
        overall = sum(p == r.label for p, r in zip(predicted, rows)) / max(len(rows), 1)
        return f"{overall:.1%} (" + ", ".join(f"{k} {sum(v) / max(len(v), 1):.0%}" for k, v in by_label.items()) + ")"

    print(f"  label agreement of that classifier with the synthetic labels: before {agreement(before)}, "
          f"after {agreement(after)}")
    parse = next((s for s in manifest.funnel if s.stage == "parse"), None)
    if parse:
        print(f"  parse rejections: {parse.rows_in - parse.kept} of {parse.rows_in} {dict(parse.dropped)}")
    dedup = [s for s in manifest.funnel if s.stage.endswith("dedup")]
    print("  dropped as duplicates: " + ", ".join(f"{s.stage} {s.rows_in - s.kept}" for s in dedup))

    def words(rows: list[Record]) -> str:
        counts = sorted(len(r.text.split()) for r in rows)
        return f"median {statistics.median(counts):.0f}, 90th pct {counts[int(0.9 * (len(counts) - 1))]}"

    print(f"  words per text: real {words(validation)}; synthetic before {words(before)}, after {words(after)}")


if __name__ == "__main__":
    main()
