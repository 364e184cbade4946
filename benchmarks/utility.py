"""Does the synthetic data help? Macro-F1 on held-out real rows, for any classification recipes.

Builds each recipe (a re-run reuses its request cache) with the same generator settings and the same
request budget (`--requests-per-label` prompts per label, the fixed-request mode of `factory compare`),
then, for each of `--draws` different draws of `--real-per-label` real rows per label (from the real rows
outside the validation set, never the recipe's own seed), trains the linear evaluator (logistic
regression on frozen MiniLM embeddings) on:

    real only | real + <recipe> rows (after each filter stage) | <recipe> rows only | real, --reference per label

and scores it on the same held-out real rows (those that are validation rows of every recipe, sampled to
`--validation`). The first recipe's real data is the set; every recipe must read the same real file.

With `--builds N`, each recipe is built N times with seeds seed, seed+1, ... (its real rows split as with
its own seed, so every build is scored on the same held-out rows). Each recipe's figures are then over
draws x builds, and the spread from one build to the next is printed: one build cannot rank two recipes that
differ by a few points.

With `--leave-out TYPE ...`, it also scores real + <recipe> rows filtered by its chain without that filter type
(re-filtered from a copy of the run directory: no request is sent again). What a stage did is then
printed paired per draw: the same real rows and classifier seed, with and without the stage.

Rows carry weights (an annotated row's vote agreement, a weight stage's): the evaluator trains with them, and
each recipe is also scored on its final rows unweighted, and re-weighted in-process with `--weights SOURCES`
(a weight stage on the final rows: no request is sent). With several recipes it also scores their final rows
together (a mix, such as generated + annotated rows). `--setfit-draws N --setfit-recipes NAME ...` scores real only and
those recipes' final rows (weighted, unweighted, re-weighted) with SetFit too, on the first N draws (slow: about
a minute per fit on 2 cores).

For each recipe it reports what a kept row cost: requests (every vote or turn counts), generation wall time and
tokens per final row; for annotated rows (the user's passages, labelled by the model) the share whose label is the
real file's own label for that text.

Then it says why: distinct n-grams and embedding spread of each recipe's rows against real rows, the
critic's AUC (how well a classifier tells the rows from real ones: 0.5 is indistinguishable), the
words per text, and the parse and filter drops.

    python benchmarks/utility.py recipes/movie-reviews.yaml recipes/movie-reviews-grounded.yaml \\
        --requests-per-label 40 --draws 5 --json runs/utility-movies.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import shutil
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from factory import build
from factory.data.real import load_real_rows, real_split, split_seed
from factory.embeddings import Embedder
from factory.eval.evaluators import build_evaluator
from factory.eval.metrics import mean_spread, scores
from factory.filters.base import FilterContext
from factory.filters.params import WeightParams
from factory.filters.weights import Weights
from factory.recipe_file import load_recipe
from factory.records import OWN_TEXT, WEIGHT, Record
from factory.run.store import RequestCache, RunStore
from factory.run.store import stage_rows as rows_by_stage
from factory.spec import RecipeBase
from factory.text import words


def stage_rows(run_dir: Path) -> dict[str, list[Record]]:
    with RunStore(run_dir) as store:
        by_id = {r.id: r for r in store.records()}
    return rows_by_stage(run_dir, by_id)


def distinct_ngrams(texts: list[str], n: int) -> float:
    """Unique word n-grams / all word n-grams (on the same number of rows for every set compared)."""
    grams = [tuple(t[k : k + n]) for t in (words(x) for x in texts) for k in range(len(t) - n + 1)]
    return len(set(grams)) / max(len(grams), 1)


def spread(vectors: np.ndarray) -> float:
    """Mean pairwise cosine distance of normalised embeddings (higher: more varied rows)."""
    if len(vectors) < 2:
        return 0.0
    sims = vectors @ vectors.T
    n = len(vectors)
    return float(1 - (sims.sum() - n) / (n * (n - 1)))


def critic_auc(synthetic: np.ndarray, real: np.ndarray, seed: int) -> float:
    """5-fold AUC of a logistic regression telling synthetic rows from as many real ones."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    x = np.vstack([synthetic, real])
    y = np.array([1] * len(synthetic) + [0] * len(real))
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    return float(cross_val_score(LogisticRegression(C=1.0, max_iter=2000), x, y, cv=folds, scoring="roc_auc").mean())


def describe(rows: list[Record], real: list[Record], embedder: Embedder, size: int, seed: int, *,
             critic: bool = True) -> dict[str, Any]:
    rng = random.Random(f"describe/{seed}")
    sample = rng.sample(rows, min(size, len(rows)))
    reference = rng.sample(real, min(len(sample), len(real)))
    vectors = embedder.encode([r.text for r in sample])
    lengths = [len(r.text.split()) for r in sample]
    figures: dict[str, Any] = {
        "rows": len(rows), "compared_rows": len(sample),
        "distinct_1": distinct_ngrams([r.text for r in sample], 1), "distinct_2": distinct_ngrams([r.text for r in sample], 2),
        "spread": spread(vectors), "median_words": statistics.median(lengths) if lengths else 0,
    }
    if critic and len(sample) >= 10:
        figures["critic_auc"] = critic_auc(vectors, embedder.encode([r.text for r in reference]), seed)
    return figures


def reseeded(spec: RecipeBase, build_index: int) -> tuple[RecipeBase, str]:
    """The recipe for one of several builds, and its run directory's name. Build 0 is the recipe as
    written; build k has seed + k, with the real rows still split by the recipe's own seed."""
    if build_index == 0:
        return spec, spec.name
    seed = spec.seed + build_index
    real = spec.real_data.model_copy(update={"seed": split_seed(spec)})
    return spec.model_copy(update={"seed": seed, "real_data": real}), f"{spec.name}-seed{seed}"


def build_all(recipes: list[RecipeBase], builds: int, requests_per_label: dict[str, int],
              work: Path) -> dict[str, list[tuple[RecipeBase, str, dict[str, list[Record]]]]]:
    """Each recipe built `builds` times: (recipe, run directory name, rows after each stage) per build."""
    built: dict[str, list[tuple[RecipeBase, str, dict[str, list[Record]]]]] = defaultdict(list)
    for spec in recipes:
        for index in range(builds):
            variant, name = reseeded(spec, index)
            started = time.perf_counter()
            result = build(variant, work / name, progress=False, requests_per_bucket=requests_per_label[spec.name])
            stages = stage_rows(result.run_dir)
            built[spec.name].append((variant, name, stages))
            print(f"built {name}: {result.manifest.budget.used} requests, {len(stages['parse'])} parsed, "
                  f"{result.manifest.rows} final rows ({time.perf_counter() - started:.0f} s)", flush=True)
    return built


def cost_per_row(run_dir: Path) -> dict[str, Any]:
    """Requests, generation seconds and tokens per final row, from the manifest of the build that sent the requests
    (kept as cost.json: a re-run answered from the cache takes no model time)."""
    kept = run_dir / "cost.json"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    if kept.exists():
        manifest = json.loads(kept.read_text())
    elif any(g["requests"] > g["cached"] for g in manifest["generators"]):
        kept.write_text(json.dumps(manifest))
    rows = max(manifest["rows"], 1)
    requests = sum(g["requests"] for g in manifest["generators"])
    return {"rows": manifest["rows"], "requests": requests, "generation_s": manifest["timings"]["generation_s"],
            "requests_per_row": requests / rows, "seconds_per_row": manifest["timings"]["generation_s"] / rows,
            "prompt_tokens_per_row": manifest["tokens"]["prompt"] / rows,
            "completion_tokens_per_row": manifest["tokens"]["completion"] / rows}


def annotation_accuracy(rows: list[Record], truth: dict[str, str]) -> dict[str, Any] | None:
    """Of the annotated rows (the user's own passages), the share whose label is the real file's for that text."""
    annotated = [r for r in rows if r.meta.get(OWN_TEXT)]
    if not annotated:
        return None
    known = [r for r in annotated if r.text in truth]
    right = sum(truth[r.text] == r.label for r in known)
    return {"annotated": len(annotated), "with_true_label": len(known), "accuracy": right / len(known) if known else None}


def unweighted(rows: list[Record]) -> list[Record]:
    return [dataclasses.replace(r, meta={k: v for k, v in r.meta.items() if k != WEIGHT}) for r in rows]


def reweighted(rows: list[Record], sources: list[str], spec: RecipeBase, embedder: Embedder) -> list[Record]:
    """The rows after a weight stage with `sources`, in-process, fitted as the build would fit it (on the recipe's own
    real training rows, which `confidence` reads)."""
    context = FilterContext(seed=spec.seed, labels=tuple(spec.buckets()), real_train=real_split(spec).train, embedder=embedder)
    return Weights(WeightParams(sources=sources)).fit(context).apply(rows).kept


def without_filter(spec: RecipeBase, filter_type: str) -> RecipeBase:
    """The recipe with every filter of `filter_type` taken out of its chain."""
    return spec.model_copy(update={"filters": [f for f in spec.filters if f.type != filter_type]})


def cached_requests(run_dir: Path) -> int:
    cache = RequestCache(run_dir / "requests.sqlite")
    try:
        return len(cache)
    finally:
        cache.close()


def leave_out(spec: RecipeBase, name: str, filter_types: list[str], requests_per_label: int, work: Path) -> dict[str, list[Record]]:
    """For each of `filter_types` in the recipe's chain: the final rows of the chain without it. Each
    variant re-filters a copy of the recipe's run directory, so its requests are all answered from cache."""
    finals: dict[str, list[Record]] = {}
    for filter_type in filter_types:
        if not any(f.type == filter_type for f in spec.filters):
            continue
        run_dir = work / f"{name}-without-{filter_type}"
        if not run_dir.exists():
            shutil.copytree(work / name, run_dir)
        before = cached_requests(run_dir)
        build(without_filter(spec, filter_type), run_dir, progress=False, requests_per_bucket=requests_per_label)
        sent = cached_requests(run_dir) - before
        finals[filter_type] = stage_rows(run_dir)["final"]
        print(f"built {name} without {filter_type}: {len(finals[filter_type])} final rows, {sent} requests sent", flush=True)
    return finals


def paired(table: dict[str, list[float]], better: str, worse: str) -> str:
    """Mean and spread over draws of the per-draw difference (points of macro-F1), and how many draws it raised or lowered."""
    diffs = [100 * (a - b) for a, b in zip(table[better], table[worse])]
    s = mean_spread(diffs)
    return (f"{s['mean']:+.1f} ± {s['std']:.1f} points (higher in {sum(d > 0 for d in diffs)}, "
            f"lower in {sum(d < 0 for d in diffs)} of {len(diffs)} draws)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipes", type=Path, nargs="+", help="classification recipes on the same real data")
    parser.add_argument("--requests-per-label", type=int, default=40, help="the same request budget for every recipe")
    parser.add_argument("--requests", nargs="*", default=[], metavar="NAME=N",
                        help="another number of prompts per label for the recipe NAME (an annotating recipe's prompts are short)")
    parser.add_argument("--draws", type=int, default=5, help="draws of the real training rows (one classifier each)")
    parser.add_argument("--real-per-label", type=int, default=8)
    parser.add_argument("--reference", type=int, default=64, help="real rows per label of the reference to beat")
    parser.add_argument("--validation", type=int, default=2000, help="held-out real rows scored (at least 1,000 asked)")
    parser.add_argument("--work", type=Path, default=Path("runs/utility"), help="run directories and the embedding cache")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    parser.add_argument("--builds", type=int, default=1, help="builds of each recipe, with seeds seed, seed+1, ...")
    parser.add_argument("--weights", nargs="*", default=[], metavar="SOURCE",
                        help="also score each recipe's final rows re-weighted by a weight stage with these sources "
                             "(agreement, confidence, learned)")
    parser.add_argument("--setfit-draws", type=int, default=0,
                        help="also score real only and --setfit-recipes' final rows (each variant) with SetFit on this many draws")
    parser.add_argument("--setfit-recipes", nargs="*", default=[], metavar="NAME", help="the recipes SetFit scores")
    parser.add_argument("--leave-out", nargs="*", default=[], metavar="TYPE",
                        help="filter types to score each recipe without, one at a time (e.g. confidence critic)")
    args = parser.parse_args()

    recipes = [load_recipe(path) for path in args.recipes]
    first = recipes[0]
    labels = list(first.buckets())
    per_recipe = {spec.name: args.requests_per_label for spec in recipes} | {
        name: int(n) for name, n in (item.split("=", 1) for item in args.requests)}
    built = build_all(recipes, args.builds, per_recipe, args.work)
    without = {spec.name: [leave_out(variant, name, args.leave_out, per_recipe[spec.name], args.work)
                           for variant, name, _ in built[spec.name]] for spec in recipes}
    stage_names = {spec.name: list(built[spec.name][0][2]) for spec in recipes}

    real = load_real_rows(first)
    # Held out: rows that are validation rows of every recipe (a grounded recipe may hold out fewer).
    held = set.intersection(*({r.id for r in real_split(spec).validation} for spec in recipes))
    validation = random.Random("validation").sample(sorted((r for r in real if r.id in held), key=lambda r: r.id),
                                                    min(args.validation, len(held)))
    held_ids = {r.id for r in validation}
    pool: dict[str, list[Record]] = defaultdict(list)
    for row in sorted(real, key=lambda r: r.id):
        if row.id not in held_ids:
            pool[row.label or ""].append(row)
    gold = [r.label or "" for r in validation]
    embedder = Embedder(cache=args.work / "embeddings.sqlite")
    evaluator = build_evaluator("linear", None, embedder)

    weighed = "+".join(args.weights)
    extra: dict[str, list[dict[str, list[Record]]]] = {spec.name: [] for spec in recipes}
    for spec in recipes:  # the final rows unweighted and re-weighted, per build
        for variant, _, named in built[spec.name]:
            final = named["final"]
            variants = {"final, unweighted": unweighted(final)} if any(WEIGHT in r.meta for r in final) else {}
            if args.weights:
                variants[f"final, weighted by {weighed}"] = reweighted(final, args.weights, variant, embedder)
            extra[spec.name].append(variants)
    setfit = build_evaluator("setfit", None, embedder) if args.setfit_draws else None

    table: dict[str, list[float]] = defaultdict(list)
    for draw in range(args.draws):
        rng = random.Random(f"utility/draw/{draw}")
        few = [r for label in labels for r in rng.sample(pool[label], args.real_per_label)]
        reference = [r for label in labels for r in rng.sample(pool[label], min(args.reference, len(pool[label])))]
        conditions: list[tuple[str, list[Record]]] = [("real only", few), (f"real, {args.reference} per label", reference)]
        main_conditions = list(conditions[:1])
        for spec in recipes:  # one score per build, in build order, so figures pair by (draw, build)
            for (_, _, named), left_out, variants in zip(built[spec.name], without[spec.name], extra[spec.name]):
                conditions += [(f"real + {spec.name} [{stage}]", [*rows, *few]) for stage, rows in named.items()]
                conditions += [(f"real + {spec.name} [without {kind}]", [*rows, *few]) for kind, rows in left_out.items()]
                conditions += [(f"real + {spec.name} [{name}]", [*rows, *few]) for name, rows in variants.items()]
                conditions.append((f"{spec.name} only [final]", named["final"]))
                if spec.name in args.setfit_recipes:
                    main_conditions += [(f"real + {spec.name} [final]", [*named["final"], *few])]
                    main_conditions += [(f"real + {spec.name} [{name}]", [*rows, *few]) for name, rows in variants.items()]
        if len(recipes) > 1:  # a mix: every recipe's final rows together (first builds), e.g. generated + annotated
            mixed = [r for spec in recipes for r in built[spec.name][0][2]["final"]]
            conditions.append((f"real + {' + '.join(spec.name for spec in recipes)} [final]", [*mixed, *few]))
        for name, train in conditions:
            predicted = evaluator.predict(train, validation, labels, seed=draw).predicted
            table[name].append(scores(predicted, gold, labels)["macro_f1"])
        if setfit is not None and draw < args.setfit_draws:
            for name, train in main_conditions:
                predicted = setfit.predict(train, validation, labels, seed=draw).predicted
                table[f"setfit: {name}"].append(scores(predicted, gold, labels)["macro_f1"])
            print(f"setfit draw {draw} done", flush=True)

    summary = {name: mean_spread(values) | {"runs": values} for name, values in table.items()}
    print(f"\nset: {first.real_rows().path}; labels {labels}; {args.real_per_label} real rows per label, {args.draws} draws; "
          f"{args.builds} build(s) of each recipe; "
          f"{len(validation)} held-out real rows; linear evaluator; {args.requests_per_label} requests per label per recipe\n")
    for name, s in summary.items():
        if name.startswith("setfit: "):
            continue  # printed on their own below: fewer draws
        print(f"  {name:<58} macro-F1 {s['mean']:.3f} ± {s['std']:.3f}  ({', '.join(f'{v:.3f}' for v in s['runs'])})")

    real_only = summary["real only"]["mean"]
    short = {label: len(pool[label]) for label in labels if len(pool[label]) < args.reference}
    capped = f" (capped: only {short} real rows lie outside the validation set)" if short else ""
    print(f"\n  reference to beat (real, {args.reference} per label{capped}): "
          f"{summary[f'real, {args.reference} per label']['mean']:.3f}")
    by_build: dict[str, list[float]] = {}
    for spec in recipes:
        runs = table[f"real + {spec.name} [final]"]
        by_build[spec.name] = [statistics.mean(runs[k:: args.builds]) for k in range(args.builds)]
        print(f"  real + {spec.name} (filtered) vs real only: {100 * (statistics.mean(runs) - real_only):+.1f} points")
    if args.builds > 1:
        print("\n  real + rows (filtered), each build's mean over the draws: the spread is the build-to-build noise")
        for name, means in by_build.items():
            print(f"  {name:<40} {', '.join(f'{m:.3f}' for m in means)}  (std over builds {statistics.stdev(means):.3f})")

    print("\nwhat each stage did, paired per draw (real + rows after the stage minus before it; left out: with minus without)")
    for spec in recipes:
        names = [f"real + {spec.name} [{stage}]" for stage in stage_names[spec.name]]
        for before, after in zip(names, names[1:]):
            print(f"  {after:<58} {paired(table, after, before)}")
        final = f"real + {spec.name} [final]"
        for variant in extra[spec.name][0]:
            print(f"  {f'{final} against [{variant}]':<58} {paired(table, final, f'real + {spec.name} [{variant}]')}")
            if f"setfit: real + {spec.name} [{variant}]" in table:
                print(f"  {f'setfit: {final} against [{variant}]':<58} "
                      f"{paired(table, f'setfit: {final}', f'setfit: real + {spec.name} [{variant}]')}")
        for kind in without[spec.name][0]:
            print(f"  {f'{final} with {kind}':<58} {paired(table, final, f'real + {spec.name} [without {kind}]')}")

    print("\nwhat a kept row cost, and how right the annotated labels are (against the real file's labels)")
    truth = {r.text: r.label or "" for r in real}
    costs: dict[str, list[dict[str, Any]]] = {}
    for spec in recipes:
        costs[spec.name] = []
        for _, name, named in built[spec.name]:
            cost = cost_per_row(args.work / name) | {"annotation": annotation_accuracy(named["final"], truth)}
            costs[spec.name].append(cost)
            annotated = cost["annotation"]
            known = annotated and annotated["accuracy"] is not None
            right = (f"; annotated {annotated['annotated']}, label right {annotated['accuracy']:.3f} "
                     f"(of {annotated['with_true_label']} found in the real file)" if known else "")
            print(f"  {name:<40} {cost['rows']:>4} rows  {cost['requests_per_row']:.2f} requests, {cost['seconds_per_row']:.2f} s, "
                  f"{cost['prompt_tokens_per_row']:.0f} + {cost['completion_tokens_per_row']:.0f} tokens per row{right}")
    if args.setfit_draws:
        print(f"\nSetFit on the first {args.setfit_draws} draws (main conditions)")
        for name, values in table.items():
            if name.startswith("setfit: "):
                s = mean_spread(values)
                print(f"  {name:<66} macro-F1 {s['mean']:.3f} ± {s['std']:.3f}  ({', '.join(f'{v:.3f}' for v in values)})")

    print("\nwhy: rows compared on equal numbers (distinct n-grams and spread depend on the count)")
    size = min(len(named["final"]) for spec in recipes for _, _, named in built[spec.name])
    real_pool = [r for rows in pool.values() for r in rows]
    figures = {"real (outside validation)": describe(real_pool, real_pool, embedder, size, 0, critic=False)}
    for spec in recipes:  # each figure is its mean over the builds
        each = [describe(named["final"], real_pool, embedder, size, 0) for _, _, named in built[spec.name]]
        figures[spec.name] = {key: statistics.mean(f[key] for f in each) for key in each[0]}
    for name, f in figures.items():
        auc = f"critic AUC {f['critic_auc']:.3f}" if "critic_auc" in f else "critic AUC -"
        print(f"  {name:<34} {f['compared_rows']:>4} rows  distinct-1 {f['distinct_1']:.3f}  distinct-2 {f['distinct_2']:.3f}  "
              f"spread {f['spread']:.3f}  median words {f['median_words']:.0f}  {auc}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"summary": summary, "by_build": by_build, "figures": figures, "costs": costs,
                                         "validation_rows": len(validation),
                                         "args": {k: str(v) for k, v in vars(args).items()}}, indent=1))


if __name__ == "__main__":
    main()
