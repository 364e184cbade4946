"""Does a change to the code change what a build writes? Record once, check after every refactor.

    python benchmarks/same_output.py record DIR   # with the code BEFORE the change
    python benchmarks/same_output.py check DIR    # with the code after it

`record` builds the shipped recipes small (movie-reviews with --per-label 2, product-descriptions
with --count 2) on their packaged local model into DIR/<recipe>/, then re-runs each build from its
request cache and keeps that cached re-run's dataset parquet and manifest in DIR/<recipe>.expected/.
`check` copies each run directory, re-runs the same command with the current code (from the cache:
no model is called) and compares: the parquet must be byte-identical, and the manifest may differ
only in timings and the schema version. It prints every difference and exits 1 if there is one.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RECIPES = {"movie-reviews": ["--per-label", "2"], "product-descriptions": ["--count", "2"]}
# What may differ between two cached re-runs of the same build by different code: timings (the
# manifest's own and the eval's per-evaluator "seconds") and the schema version.
VOLATILE = {"timings", "schema_version"}
TIMING_KEYS = {"seconds"}


def build(recipe: str, out: Path) -> None:
    cmd = [sys.executable, "-m", "factory", "build", str(ROOT / "recipes" / f"{recipe}.yaml"), "--out", str(out),
           "--no-progress", *RECIPES[recipe]]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode not in (0, 3, 4):
        sys.exit(f"{' '.join(cmd)} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")


def outputs(run: Path) -> tuple[bytes, dict[str, Any]]:
    parquet = (run / "dataset" / "data" / "train.parquet").read_bytes()
    return parquet, json.loads((run / "manifest.json").read_text(encoding="utf-8"))


def comparable(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest less what may differ; recipe_dir relative to the checkout it was built from."""
    kept = {k: v for k, v in manifest.items() if k not in VOLATILE}
    kept["recipe_dir"] = Path(manifest["recipe_dir"]).name
    return kept


def differences(expected: Any, actual: Any, where: str = "manifest") -> list[str]:
    if isinstance(expected, dict) and isinstance(actual, dict):
        found = []
        for key in sorted(set(expected) | set(actual), key=str):
            if key in TIMING_KEYS:
                continue
            if key not in actual:
                found.append(f"{where}.{key}: missing")
            elif key not in expected:
                found.append(f"{where}.{key}: new")
            else:
                found += differences(expected[key], actual[key], f"{where}.{key}")
        return found
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        return [d for i, (e, a) in enumerate(zip(expected, actual)) for d in differences(e, a, f"{where}[{i}]")]
    return [] if expected == actual else [f"{where}: {json.dumps(expected)[:120]} -> {json.dumps(actual)[:120]}"]


def record(root: Path) -> None:
    for recipe in RECIPES:
        run = root / recipe
        build(recipe, run)  # generates
        build(recipe, run)  # the cached re-run whose outputs `check` must reproduce
        parquet, manifest = outputs(run)
        expected = root / f"{recipe}.expected"
        expected.mkdir(parents=True, exist_ok=True)
        (expected / "train.parquet").write_bytes(parquet)
        (expected / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        print(f"recorded {recipe}: {manifest['rows']} rows, {len(parquet)} parquet bytes")


def check(root: Path) -> int:
    failed = 0
    for recipe in RECIPES:
        expected = root / f"{recipe}.expected"
        with tempfile.TemporaryDirectory() as tmp:
            run = Path(shutil.copytree(root / recipe, Path(tmp) / recipe))
            build(recipe, run)
            parquet, manifest = outputs(run)
        before = json.loads((expected / "manifest.json").read_text(encoding="utf-8"))
        found = differences(comparable(before), comparable(manifest))
        if parquet != (expected / "train.parquet").read_bytes():
            found.insert(0, "dataset/data/train.parquet: bytes differ")
        if manifest["generators"] and any(g["requests"] != g["cached"] for g in manifest["generators"]):
            found.append("the re-run called a model: it was not served from the cache")
        print(f"{recipe}: {'same output' if not found else f'{len(found)} difference(s)'}")
        for line in found:
            print(f"  {line}")
        failed += bool(found)
    return 1 if failed else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["record", "check"])
    parser.add_argument("dir", type=Path)
    args = parser.parse_args()
    if args.action == "record":
        record(args.dir)
    else:
        sys.exit(check(args.dir))


if __name__ == "__main__":
    main()
