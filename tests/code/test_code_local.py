"""The shipped python-functions recipe on the packaged default model: real solutions, really run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from factory.cli import main
from factory.run.manifest import load_manifest

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


@pytest.mark.skipif(os.system("command -v bwrap >/dev/null") != 0, reason="bubblewrap is not installed")
def test_the_python_functions_recipe_runs_on_the_default_model(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    run = tmp_path / "python-functions"
    code = main(["build", str(RECIPES / "python-functions.yaml"), "--out", str(run), "--count", "1",
                 "--max-requests", "2", "--no-progress"])
    assert code in (0, 3), "complete, or the budget of 2 tasks (with their repairs) ran out first"
    manifest = load_manifest(run)
    assert manifest.generators[0]["model"] == "qwen2.5-coder-1.5b-instruct"
    report = manifest.kind_report["code"]
    assert report["prompts"] >= 1 and report["passed_after_repair"] + sum(report["rejected"].values()) == report["prompts"]
    table = pd.read_parquet(run / "dataset" / "data" / "train.parquet")
    assert len(table) == manifest.rows
    for line in (run / "generated.jsonl").read_text().splitlines():  # every kept row passed its tests in the sandbox
        row = json.loads(line)
        assert row["fields"]["solution"].strip() and row["fields"]["tests"].strip() and row["meta"]["run_seconds"] > 0
    if manifest.rows:
        assert (table["language"] == "python").all() and table["passed_after_repairs"].between(0, 2).all()
        assert (run / "export" / "messages" / "train.jsonl").is_file()
