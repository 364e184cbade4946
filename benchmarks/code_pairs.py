"""Code pairs on the packaged default model: how many solutions pass their tests, first try and after
repair, why the rest fail; and rows/s with and without the parallel runner.

1. `factory build recipes/python-functions.yaml --count N` with the local default (Qwen2.5-Coder-1.5B):
   the share of tasks whose solution passed on the first try and after up to `repair_rounds` repairs,
   the rejection reasons, requests and seconds per kept row.
2. The runner: the same replies replayed by a loopback OpenAI server (every request answered with the
   completion the model gave it, after a fixed latency, one request at a time like the local model), built
   with `run.workers: 0` (each solution runs inline and generation waits: the baseline) and with the
   default (a worker per core, generation goes on while solutions run). Same rows, different rows/s.
3. Verification: every solution and tests the model wrote (first tries and repairs, from the run's
   request cache), verified by the split harness (the tests in one process, the solution in another,
   plain values between them: factory/code/harness.py) and by the baseline, the same tests run in the
   solution's own process (the design before, which a solution could fool): seconds per solution and
   how often the two verdicts agree on pass or fail; then the cached re-run of the recipe, which must
   send no request: its wall time.

    python benchmarks/code_pairs.py [--count 8] [--latency 1.0] [--work /tmp/code-pairs] [--run DIR]
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
from factory.code.verify import static_problem, stub_of, verify  # noqa: E402
from factory.recipe_file import parse_recipe  # noqa: E402
from factory.sandbox import Limits, run_python  # noqa: E402
from factory.tasks.code import strip_fence  # noqa: E402

RECIPE = ROOT / "recipes" / "python-functions.yaml"


def model_run(count: int, work: Path) -> Path:
    spec = load_recipe(RECIPE)
    spec.resize("--count", count)
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


# The baseline: the solution, its tests and the stub's run in one sandboxed process, as before the split.
IN_PROCESS = """import json, types, sys
def run(path):
    module = types.ModuleType('solution'); sys.modules['solution'] = module
    exec(compile(open(path).read(), path, 'exec'), module.__dict__)
    namespace = dict(vars(module)); namespace['__name__'] = 'test_solution'
    exec(compile(open('test_solution.py').read(), 'test_solution.py', 'exec'), namespace)
    for name, value in list(namespace.items()):
        if name.startswith('test') and callable(value) and not isinstance(value, type):
            value()
ok = stub_passed = False
try:
    run('solution.py'); ok = True
    try:
        run('stub.py'); stub_passed = True
    except BaseException:
        pass
except BaseException:
    pass
json.dump({'passed': ok and not stub_passed}, open('result.json', 'w'))
"""


def in_process(solution: str, tests: str, limits: Limits) -> bool:
    files = {"solution.py": solution, "test_solution.py": tests, "stub.py": stub_of(solution), "check.py": IN_PROCESS}
    result = run_python(files, "check.py", limits=limits, outputs=("result.json",))
    return "result.json" in result.files and json.loads(result.files["result.json"])["passed"]


def written_code(run: Path) -> list[tuple[str, str]]:
    """Every (solution, tests) in the run's replies that parses (first tries and repairs alike)."""
    pairs = []
    for text in replies(run).values():
        try:
            reply = json.loads(text)
        except ValueError:
            continue
        if not isinstance(reply, dict) or not isinstance(reply.get("solution"), str) or not isinstance(reply.get("tests"), str):
            continue
        solution, tests = strip_fence(reply["solution"]), strip_fence(reply["tests"])
        if static_problem(solution, tests) is None:
            pairs.append((solution, tests))
    return pairs


def verification(run: Path) -> None:
    limits = Limits(**{k: v for k, v in load_recipe(RECIPE).run.model_dump().items() if k in ("seconds", "memory_mb")})
    pairs = written_code(run)
    split_s = baseline_s = 0.0
    agree, reasons = 0, {}
    for solution, tests in pairs:
        started = time.perf_counter()
        outcome = verify(solution, tests, limits)
        split_s += time.perf_counter() - started
        started = time.perf_counter()
        before = in_process(solution, tests, limits)
        baseline_s += time.perf_counter() - started
        agree += outcome.passed == before
        reasons[outcome.reason] = reasons.get(outcome.reason, 0) + 1
    print(json.dumps({"phase": "verification", "solutions": len(pairs), "split_s_per_solution": round(split_s / len(pairs), 3),
                      "in_process_s_per_solution": round(baseline_s / len(pairs), 3), "same_verdict": agree,
                      "split_reasons": reasons}), flush=True)
    spec = load_recipe(RECIPE)
    spec.resize("--count", load_recipe_count(run))
    with sqlite3.connect(run / "requests.sqlite") as db:
        before_requests = db.execute("SELECT COUNT(*) FROM requests").fetchone()[0]
    started = time.perf_counter()
    result = build(spec, run, progress=False)
    wall = time.perf_counter() - started
    with sqlite3.connect(run / "requests.sqlite") as db:
        after_requests = db.execute("SELECT COUNT(*) FROM requests").fetchone()[0]
    print(json.dumps({"phase": "cached_rerun", "requests_sent": after_requests - before_requests, "rows": result.manifest.rows,
                      "wall_seconds": round(wall, 2)}), flush=True)


def load_recipe_count(run: Path) -> int:
    return json.loads((run / "manifest.json").read_text())["recipe"]["generate"]["count"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=8, help="verified rows wanted from the model")
    parser.add_argument("--latency", type=float, default=1.0, help="seconds per replayed request")
    parser.add_argument("--work", type=Path, default=Path("/tmp/code-pairs"))
    parser.add_argument("--run", type=Path, help="a finished model run of the recipe to reuse (skips step 1)")
    parser.add_argument("--only-verification", action="store_true", help="step 3 only")
    args = parser.parse_args()
    os.environ.setdefault("LOOPBACK_KEY", "loopback-key-not-secret")
    run = args.run or model_run(args.count, args.work)
    if not args.only_verification:
        replayed(run, args.work, args.latency)
    verification(run)


if __name__ == "__main__":
    main()
