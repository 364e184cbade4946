"""task: code end to end against the loopback OpenAI server: verified rows, repairs, reasons, resume."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import classification_recipe, write_recipe
from loopback_openai import Action

from factory.cli import main
from factory.recipe_file import parse_recipe
from factory.run.manifest import load_manifest

pytestmark = pytest.mark.skipif(os.system("command -v bwrap >/dev/null") != 0, reason="bubblewrap is not installed")


def task(k: int) -> dict[str, str]:
    return {"instruction": f"Write a function `times_{k}(x)` that returns x multiplied by {k}.",
            "solution": f"```python\ndef times_{k}(x):\n    return x * {k}\n```",
            "tests": f"assert times_{k}(2) == {2 * k}\nassert times_{k}(0) == 0"}


def coder(body: dict, n: int) -> Action:
    """By the prompt's seed: right first time; wrong, then repaired; wrong forever; tests that check nothing."""
    messages = body["messages"]
    repairing = len(messages) > 2
    k = body["seed"] % 1000 + 3  # distinct tasks
    if repairing:
        first = json.loads(messages[2]["content"])
        k = int(first["instruction"].split("times_")[1].split("(")[0])
    fate = k % 4
    reply = task(k)
    if fate == 1 and not repairing:
        reply["solution"] = f"def times_{k}(x):\n    return x + {k}\n"
    if fate == 2:
        reply["solution"] = f"def times_{k}(x):\n    return x - {k}\n"
    if fate == 3:
        reply["tests"] = "assert True"
    if repairing:
        reply.pop("instruction")
    return Action(text=json.dumps(reply))


def code_recipe(base_url: str, **overrides: Any) -> dict[str, Any]:
    base = classification_recipe(base_url)
    return {"name": "funcs", "task": "code", "seed": 2, "description": "Small Python functions.",
            "axes": {"topic": ["math", "strings"]},
            "examples": [{"instruction": "Write `double(x)`.", "solution": "def double(x):\n    return 2 * x\n",
                          "tests": "assert double(2) == 4"}],
            "generate": {"count": 4, "max_requests": 12}, "repair_rounds": 1, "generators": base["generators"],
            # the scripted tasks share one template: novelty and near_dedup would rightly drop them
            "filters": [{"type": "exact_dedup"}], **overrides}


def test_only_verified_solutions_are_kept_and_failures_go_back_for_repair(loopback, tmp_path: Path, canary_key) -> None:
    server = loopback(script=coder)
    path = write_recipe(tmp_path / "r.yaml", code_recipe(server.base_url))
    run = tmp_path / "run"
    code = main(["build", str(path), "--out", str(run), "--no-progress"])
    assert code in (0, 3)
    table = pd.read_parquet(run / "dataset" / "data" / "train.parquet")
    assert list(table.columns[:6]) == ["id", "instruction", "response", "tests", "language", "passed_after_repairs"]
    assert len(table) >= 2 and (table["language"] == "python").all()
    for _, row in table.iterrows():
        k = int(row["instruction"].split("times_")[1].split("(")[0])
        assert k % 4 in (0, 1), "only right-first-time and repaired solutions are kept"
        assert row["passed_after_repairs"] == (k % 4), row
        assert row["response"] == f"def times_{k}(x):\n    return x * {k}\n", "no Markdown fence in the response"
    repairs = [r for r in server.log if len(r.body["messages"]) > 2]
    assert repairs and all("AssertionError" in r.body["messages"][-1]["content"] or "no_tests" in r.body["messages"][-1]["content"]
                           for r in repairs), "the repair prompt shows the failure"

    rejected = [json.loads(line) for line in (run / "rejected.jsonl").read_text().splitlines()]
    reasons = {r["reason"] for r in rejected if r["stage"] == "parse"}
    assert reasons <= {"tests_failed", "no_tests"} and reasons, reasons
    failed = next(r for r in rejected if r["reason"] == "tests_failed")
    assert failed["detail"].startswith("after 1 repair(s): ") and "AssertionError" in failed["detail"]
    assert "solution" in failed["meta"], "the failing output is kept for the report"
    generated = [json.loads(line) for line in (run / "generated.jsonl").read_text().splitlines()]
    assert all(g["meta"]["run_seconds"] > 0 for g in generated), "each kept row's run time is recorded"

    report = load_manifest(run).kind_report["code"]
    assert report["passed_after_repair"] >= report["passed_first_try"] >= 1
    assert set(report["rejected"]) <= {"tests_failed", "no_tests"}
    assert "## Verified by execution" in (run / "README.md").read_text()

    # A re-run sends nothing and writes the same dataset (the solutions run again, in the sandbox; run times
    # stay out of the dataset, so it is byte-identical).
    before = len(server.log)
    assert main(["build", str(path), "--out", str(run), "--no-progress"]) == code
    assert len(server.log) == before
    assert pd.read_parquet(run / "dataset" / "data" / "train.parquet").equals(table)


def test_the_inline_runner_gives_the_same_rows(loopback, tmp_path: Path, canary_key) -> None:
    server = loopback(script=coder)
    rows = {}
    for workers in (0, 2):
        run = tmp_path / f"run{workers}"
        path = write_recipe(tmp_path / f"r{workers}.yaml", code_recipe(server.base_url, run={"workers": workers}))
        main(["build", str(path), "--out", str(run), "--no-progress"])
        rows[workers] = pd.read_parquet(run / "dataset" / "data" / "train.parquet")
    pd.testing.assert_frame_equal(rows[0], rows[2])


def test_code_recipes_are_checked_when_they_load() -> None:
    base = {"name": "x", "task": "code", "examples": [{"instruction": "a", "solution": "b", "tests": "c"}]}
    spec = parse_recipe(base)
    assert [f.type for f in spec.filters] == ["exact_dedup", "novelty", "near_dedup"]
    assert spec.filters[2].field == "solution" and spec.generate.count == 50
    with pytest.raises(Exception, match="language"):
        parse_recipe({**base, "language": "cobol"})
    with pytest.raises(Exception, match="examples"):
        parse_recipe({**base, "examples": []})
