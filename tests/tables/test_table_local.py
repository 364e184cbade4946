"""The shipped table recipe on the packaged default model (Qwen2.5-Coder-1.5B): rows as JSON, and a
table program run in the sandbox. One request each: what is checked is the whole path, not the model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from factory.cli import main
from factory.run.manifest import load_manifest
from factory.tables.schema import ColumnSpec, check_row

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "restaurant-tips.yaml"
ROW_REASONS = {"wrong_type", "out_of_range", "unknown_category", "bad_pattern", "not_null", "missing_column",
               "unknown_column", "broken_check", "bad_json", "truncated"}
PROGRAM_REASONS = {"program_failed", "invalid_table", "no_program", "timeout", "memory_limit", "blocked", "truncated"}


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_the_shipped_table_recipe_writes_checked_rows_with_the_default_model(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    run = tmp_path / "tips"
    code = main(["build", str(RECIPE), "--out", str(run), "--count", "3", "--max-requests", "1", "--no-progress"])
    assert code in (0, 3)
    manifest = load_manifest(run)
    assert manifest.generators[0]["model"] == "qwen2.5-coder-1.5b-instruct" and manifest.generators[0]["requests"] == 1
    columns = {name: ColumnSpec(**spec) for name, spec in yaml.safe_load(RECIPE.read_text())["columns"].items()}
    kept = rows(run / "generated.jsonl")
    for row in kept:
        assert check_row(columns, row["fields"]) == row["fields"]
    parse_drops = [r for r in rows(run / "rejected.jsonl") if r["stage"] == "parse"]
    assert {r["reason"] for r in parse_drops} <= ROW_REASONS
    assert manifest.funnel[0].rows_in == len(kept) + len(parse_drops) >= 1
    if manifest.rows:
        assert manifest.kind_report["fidelity"]["real_rows"] == 244  # the tips table shipped in plotly
    assert "## Table" in (run / "README.md").read_text()


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
def test_a_table_program_from_the_default_model_runs_in_the_sandbox(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    recipe = yaml.safe_load(RECIPE.read_text()) | {"method": "program"}
    recipe["real_data"] = None
    path = tmp_path / "tips-program.yaml"
    path.write_text(yaml.safe_dump(recipe))
    run = tmp_path / "tips"
    code = main(["build", str(path), "--out", str(run), "--count", "20", "--max-requests", "1", "--no-progress"])
    assert code in (0, 3)
    attempts = load_manifest(run).kind_report["program"]["attempts"]
    assert len(attempts) == 1
    if code == 0:
        assert (run / "program.py").exists() and load_manifest(run).rows == 20
    else:
        (rejected,) = rows(run / "rejected.jsonl")
        assert rejected["reason"] in PROGRAM_REASONS and attempts[0]["error"]
        if rejected["reason"] != "no_program":
            assert attempts[0]["seconds"] > 0  # it ran, in the sandbox
