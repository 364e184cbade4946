"""`factory compare`: one recipe, the same prompts for every generator, the evidence side by side.

Fairness. Every generator gets exactly the same requests: build()'s fixed-request mode
(`requests_per_bucket=N`) issues prompts 0..N-1 of every label in one round, and a prompt is a pure
function of (seed, label, index), so request i of label L is the same messages, few-shot picks and
axis draws for every generator. Each generator gets its own run directory (`<out>/<generator>/`),
which resumes and publishes like any run; the filter chain and the eval are the recipe's own, so
every generator faces the same filters and the same real validation rows.

N defaults to ceil(1.05 x the recipe's per-label target): what a normal build's first round asks
for, so a compare costs each generator about one round of the build it would replace, and a
generator that loses at most 5% of its rows still reaches the target.

The package: `runs` builds each generator's run through the public `factory.build` and reads it
back, `metrics` measures it (the definitions are in its docstring), `render` writes the page.
"""


from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from factory.api import build
from factory.comparison.metrics import (
    CLUSTER_SHARE,
    Measurer,
    clusters_holding,
    cross_label_collisions,
    distinct_n,
    mean_pairwise_distance,
    pairs_section,
    seeded_sample,
    shared_clusters,
    verdict,
)
from factory.comparison.runs import chosen_generators, default_out, default_requests, fixed_prompts, load_run, run_dir_name
from factory.data.real import real_split
from factory.embeddings import Embedder
from factory.run.store import atomic_write_text
from factory.spec import RecipeBase
from factory.tasks import make_recipe

log = logging.getLogger(__name__)


@dataclass
class CompareResult:
    """What `compare()` returns: where the comparison is written and what compare.json holds."""

    out_dir: Path
    data: dict[str, Any]

    @property
    def verdict(self) -> str:
        return str(self.data["verdict"]["text"])


def compare(spec: RecipeBase, out: str | Path | None = None, *, generators: Sequence[str] | None = None,
            requests_per_label: int | None = None, pair: bool = False, progress: bool = True,
            embedder: Embedder | None = None) -> CompareResult:
    """Build the recipe once per generator on the same prompts, measure each run, write compare.json and compare.html."""
    from factory.comparison.render import write_html

    chosen = chosen_generators(spec, generators)
    requests = requests_per_label or default_requests(spec)
    out_dir = Path(out) if out else default_out(spec)
    run_dirs = {p.name: out_dir / run_dir_name(p.name) for p in chosen}
    for i, params in enumerate(chosen, 1):
        log.info("compare %d/%d: %s (%s), %d requests per label -> %s", i, len(chosen), params.name,
                 params.model, requests, run_dirs[params.name])
        build(spec, run_dirs[params.name], progress=progress, only_generator=params.name, requests_per_bucket=requests)

    real_train = real_split(spec).train
    recipe = make_recipe(spec, real_train)
    runs = [load_run(p, run_dirs[p.name], recipe, fixed_prompts(recipe, spec, p.name, requests)) for p in chosen]

    measurer = Measurer(spec, real_train, embedder or Embedder())
    metrics = {run.name: measurer.measure(run) for run in runs}
    counts, k = shared_clusters({run.name: measurer.vectors(seeded_sample(run.final, spec.seed)) for run in runs}, spec.seed)
    for name, count in counts.items():
        metrics[name]["diversity"]["clusters_90"] = count
    has_eval = spec.evaluation() is not None
    data: dict[str, Any] = {
        "recipe": spec.name, "recipe_hash": spec.hash(), "task": spec.task,
        "requests_per_label": requests, "labels": list(spec.buckets()), "generators": [r.name for r in runs],
        "evaluator": measurer.evaluator, "clusters": {"k": k, "share": CLUSTER_SHARE, "seed": spec.seed},
        "metrics": metrics, "verdict": verdict(metrics, has_eval),
    }
    if pair:
        data["pairs"] = pairs_section(runs, measurer)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "compare.json", json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    write_html(out_dir, data)
    return CompareResult(out_dir, data)


__all__ = ["CompareResult", "clusters_holding", "compare", "cross_label_collisions", "distinct_n",
           "mean_pairwise_distance", "verdict"]
