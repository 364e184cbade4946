"""Code pairs on the packaged default model: how many solutions pass their tests, first try and after
repair, why the rest fail; and rows/s with and without the parallel runner.

1. `factory build recipes/python-functions.yaml --count N` with the local default (Qwen2.5-Coder-1.5B):
   the share of tasks whose solution passed on the first try and after up to `repair_rounds` repairs,
   the rejection reasons, requests and seconds per kept row.
2. The runner: the same replies replayed by a loopback OpenAI server (every request answered with the
   completion the model gave it, after a fixed latency, one request at a time like the local model), built
   with `run.workers: 0` (each solution runs inline and generation waits: the baseline) and with the
   default (a worker per core, generation goes on while solutions run). Same rows, different rows/s.

    python benchmarks/code_pairs.py [--count 8] [--latency 1.0] [--work /tmp/code-pairs]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from loopback_openai import Action, LoopbackOpenAI  # noqa: E402

from factory import build, load_recipe  # noqa: E402
from factory.spec import parse_recipe  # noqa: E402

RECIPE = ROOT / "recipes" / "python-functions.yaml"


def model_run(count: int, work: Path) -> Path:
    spec = load_recipe(RECIPE)
    spec.resize(count=count)
    run = work / "model"
    started = time.perf_counter()
    result = build(spec, run, progress=False)
    wall = time.perf_counter() - started
    manifest = result.manifest
    code = manifest.kind_report["code"]
    requests = manifest.generators[0]["requests"]
    print(json.dumps({"phase": "model", "model": manifest.generators[0]["model"], "status": manifest.status,
                      "tasks": code["prompts"], "passed_first_try": code["passed_first_try"],
                      "passed_after_repair": code["passed_after_repair"],
                      "pass_rate_first_try": round(code["passed_first_try"] / code["prompts"], 3),
                      "pass_rate_after_repair": round(code["passed_after_repair"] / code["prompts"], 3),
                      "rejected": code["rejected"], "funnel": {s.stage: s.dropped for s in manifest.funnel if s.dropped},
                      "rows": manifest.rows, "requests": requests, "model_seconds": manifest.generators[0]["seconds"],
                      "wall_seconds": round(wall, 1), "rows_per_s": round(manifest.rows / wall, 4),
                      "median_run_seconds": code["median_run_seconds"]}), flush=True)
    return run


def replies(run: Path) -> dict[str, str]:
    """messages (as JSON) -> the completion text the model gave, from the run's request cache."""
    with sqlite3.connect(run / "requests.sqlite") as db:
        rows = db.execute("SELECT request, completion FROM requests").fetchall()
    return {json.dumps(json.loads(r)["messages"], sort_keys=True): json.loads(c)["text"] for r, c in rows}


def replayed(run: Path, work: Path, latency: float) -> None:
    answers = replies(run)
    recipe: dict[str, Any] = yaml.safe_load(RECIPE.read_text())
    spec = load_recipe(RECIPE)
    recipe["generate"]["count"] = load_recipe_count(run)

    def script(body: dict, n: int) -> Action:
        return Action(text=answers.get(json.dumps(body["messages"], sort_keys=True), "{}"))

    with LoopbackOpenAI(script=script, delay=latency) as server:
        for workers in (0, None):
            recipe["generators"] = [{"name": "qwen15", "backend": "openai", "model": spec.generators[0].model,
                                     "base_url": server.base_url, "api_key_env": "LOOPBACK_KEY", "concurrency": 1,
                                     "temperature": 0.7, "max_tokens": 700}]
            recipe["run"] = {**recipe.get("run", {}), "workers": workers}
            replay = parse_recipe(recipe, str(RECIPE))
            replay._base_dir = RECIPE.parent
            out = work / f"replay-{workers}"
            shutil.rmtree(out, ignore_errors=True)
            started = time.perf_counter()
            result = build(replay, out, progress=False)
            wall = time.perf_counter() - started
            print(json.dumps({"phase": "runner", "workers": "inline (0)" if workers == 0 else "one per core",
                              "latency_s": latency, "rows": result.manifest.rows, "requests": len(server.log),
                              "wall_seconds": round(wall, 2), "rows_per_s": round(result.manifest.rows / wall, 3)}), flush=True)
            server.log.clear()


def load_recipe_count(run: Path) -> int:
    return json.loads((run / "manifest.json").read_text())["recipe"]["generate"]["count"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=8, help="verified rows wanted from the model")
    parser.add_argument("--latency", type=float, default=1.0, help="seconds per replayed request")
    parser.add_argument("--work", type=Path, default=Path("/tmp/code-pairs"))
    args = parser.parse_args()
    os.environ.setdefault("LOOPBACK_KEY", "loopback-key-not-secret")
    run = model_run(args.count, args.work)
    replayed(run, args.work, args.latency)


if __name__ == "__main__":
    main()
