"""`factory build` of table recipes against the loopback OpenAI server: rows, programs, resume, fidelity."""

from __future__ import annotations

import itertools
import json
import random
import re
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import write_recipe
from loopback_openai import Action

from factory.cli import main

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
COLUMNS = {
    "house_id": {"type": "string", "unique": True, "pattern": r"H\d{4}"},
    "city": {"type": "category", "values": ["Lyon", "Nantes", "Lille"]},
    "size_m2": {"type": "float", "min": 15, "max": 400},
    "bedrooms": {"type": "int", "min": 1, "max": 8},
    "price": {"type": "float", "min": 10000},
    "built": {"type": "date", "min": "1850-01-01", "max": "2026-12-31"},
    "garden": {"type": "bool", "nullable": True},
}
CHECKS = ["price > 0", "price / size_m2 >= 500", "spearman(size_m2, price) >= 0.5"]


def table_recipe(base_url: str, **overrides: Any) -> dict[str, Any]:
    recipe: dict[str, Any] = {
        "name": "houses", "task": "table", "seed": 5, "description": "Houses for sale in three French cities.",
        "columns": COLUMNS, "rows": 30, "batch_rows": 8, "checks": CHECKS,
        "axes": {"market": ["cheap", "family", "luxury"]},
        "generators": [{"name": "loop", "backend": "openai", "model": "test-model", "base_url": base_url,
                        "api_key_env": "FACTORY_TEST_KEY", "concurrency": 2, "timeout": 5.0, "max_attempts": 2, "backoff": 0.01}],
    }
    return recipe | overrides


def house(rng: random.Random) -> dict[str, Any]:
    size = round(rng.uniform(30, 200), 1)
    return {"house_id": f"H{rng.randint(0, 9999):04d}", "city": rng.choice(["Lyon", "Nantes", "Lille"]), "size_m2": size,
            "bedrooms": max(1, min(8, int(size // 30))), "price": round(size * rng.uniform(2500, 4000), -2),
            "built": f"{rng.randint(1900, 2020)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}", "garden": rng.choice([True, False, None])}


BAD_ROWS = [  # one of each problem, with the reason each must get
    ({"bedrooms": "two"}, "wrong_type"), ({"size_m2": 1000.0}, "out_of_range"), ({"city": "Paris"}, "unknown_category"),
    ({"house_id": "X1"}, "bad_pattern"), ({"price": None}, "not_null"), ({"size_m2": 100.0, "price": 20000.0}, "broken_check"),
]


REQUESTS = itertools.count()


def batch_script(body: dict, _: int) -> Action:
    """A batch of 8 rows: mostly good, two planted problems per batch, and a repeated house_id now and then."""
    rng = random.Random(body["seed"])
    n = next(REQUESTS)
    rows = [house(rng) for _ in range(8)]
    rows[0] |= BAD_ROWS[n % len(BAD_ROWS)][0]
    rows[2] |= BAD_ROWS[(n + 3) % len(BAD_ROWS)][0]
    if n % 2 == 0:
        rows[1]["house_id"] = "H0001"  # the same id in several batches: not_unique after the first
    return Action(text=json.dumps({"rows": rows}))


def read_rejected(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "rejected.jsonl").read_text().splitlines()]


def test_rows_are_checked_one_by_one_and_the_dataset_is_the_schema(tmp_path: Path, loopback, canary_key: str) -> None:
    server = loopback(script=batch_script)
    recipe = write_recipe(tmp_path / "houses.yaml", table_recipe(server.base_url))
    run = tmp_path / "run"
    assert main(["build", str(recipe), "--out", str(run), "--no-progress"]) == 0

    table = pd.read_parquet(run / "dataset" / "data" / "train.parquet")
    assert list(table.columns) == list(COLUMNS) and len(table) == 30
    assert table["house_id"].is_unique and table["city"].isin(["Lyon", "Nantes", "Lille"]).all()
    assert (table["price"] / table["size_m2"] >= 500).all()
    reasons = {r["reason"] for r in read_rejected(run) if r["stage"] == "parse"}
    assert reasons >= {reason for _, reason in BAD_ROWS}
    manifest = json.loads((run / "manifest.json").read_text())
    assert [s["stage"] for s in manifest["funnel"]] == ["parse", "exact_dedup", "target"]
    assert manifest["funnel"][0]["in"] > len(server.log)  # several rows per request
    assert len(server.log) <= 8  # 30 rows at 8 a batch: the planner sized the rounds by rows per request
    (check,) = manifest["kind_report"]["tables"]["all"]["table_checks"]
    assert check["check"] == "spearman(size_m2, price) >= 0.5" and check["passed"] and check["values"]["spearman(size_m2, price)"] > 0.5
    # A re-run resumes from the request cache: nothing is sent again, the same table comes out.
    sent = len(server.log)
    assert main(["build", str(recipe), "--out", str(run), "--no-progress"]) == 0
    assert len(server.log) == sent
    pd.testing.assert_frame_equal(pd.read_parquet(run / "dataset" / "data" / "train.parquet"), table)
    card = (run / "README.md").read_text()
    assert "## Table" in card and "spearman(size_m2, price) >= 0.5" in card


def test_a_malformed_reply_is_a_rejected_row(tmp_path: Path, loopback, canary_key: str) -> None:
    replies = iter(["not json at all", json.dumps({"rows": []}), json.dumps({"rows": ["a string"]})])
    server = loopback(script=lambda body, n: Action(text=next(replies, json.dumps({"rows": [house(random.Random(body["seed"]))]}))))
    recipe = write_recipe(tmp_path / "t.yaml", table_recipe(server.base_url, rows=2, batch_rows=1, checks=[],
                                                            generators=[{**table_recipe("")["generators"][0], "base_url": server.base_url,
                                                                         "concurrency": 1}]))
    assert main(["build", str(recipe), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    reasons = [r["reason"] for r in read_rejected(tmp_path / "run")]
    assert reasons[:3] == ["bad_json", "bad_json", "bad_json"]


def test_real_table_fidelity_and_copies_of_real_rows_are_dropped(tmp_path: Path, loopback, canary_key: str) -> None:
    rng = random.Random(1)
    real = [house(rng) for _ in range(60)]
    pd.DataFrame(real).to_csv(tmp_path / "real.csv", index=False)

    def copies(body: dict, _: int) -> Action:  # every batch plants two exact copies of real rows
        n = body["seed"]
        rows = [house(random.Random(body["seed"] + k)) for k in range(6)] + [real[n % 60], real[(n + 7) % 60]]
        return Action(text=json.dumps({"rows": rows}))

    server = loopback(script=copies)
    recipe = write_recipe(tmp_path / "t.yaml", table_recipe(server.base_url, real_data={"path": "real.csv"},
                                                            filters=[{"type": "exact_dedup"}, {"type": "leakage"}]))
    assert main(["build", str(recipe), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    leaked = [r for r in read_rejected(tmp_path / "run") if r["reason"] == "copies_real_row"]
    assert leaked and all(r["text"] == "" for r in leaked)  # redacted: they are the user's private rows
    table = pd.read_parquet(tmp_path / "run" / "dataset" / "data" / "train.parquet")
    real_ids = {tuple(map(str, row.values())) for row in real}
    assert not any(tuple(map(str, row)) in real_ids for row in table.astype(object).where(table.notna(), None).values.tolist())
    fidelity = json.loads((tmp_path / "run" / "manifest.json").read_text())["kind_report"]["fidelity"]
    assert fidelity["real_rows"] == 60 and fidelity["privacy"]["near_copies"] == 0.0
    assert 0 < fidelity["column_shapes"] <= 1 and 0 <= fidelity["detection"] <= 1
    assert set(fidelity["per_column"]) <= set(COLUMNS) and {"price", "city", "built"} <= set(fidelity["per_column"])
    assert fidelity["distributions"]["city"]["values"] and abs(sum(fidelity["distributions"]["price"]["real"]) - 1) < 1e-3
    report = (tmp_path / "run" / "report.html").read_text()
    assert "Columns, real vs synthetic" in report and "Embedding clusters" not in report


GOOD_PROGRAM = '''
import numpy as np
import pandas as pd

def make_table(n_rows, seed):
    rng = np.random.default_rng(seed)
    size = rng.uniform(30, 200, n_rows).round(1)
    return pd.DataFrame({
        "house_id": [f"H{i:04d}" for i in rng.permutation(10000)[:n_rows]],
        "city": rng.choice(["Lyon", "Nantes", "Lille"], n_rows),
        "size_m2": size,
        "bedrooms": np.clip(size // 30, 1, 8).astype(int),
        "price": (size * rng.uniform(2500, 4000, n_rows)).round(-2),
        "built": [f"{y}-06-01" for y in rng.integers(1900, 2020, n_rows)],
        "garden": rng.choice([True, False], n_rows),
    })
'''
BROKEN_PROGRAM = GOOD_PROGRAM.replace("rng.uniform(2500, 4000, n_rows)", "rng.uniform(100, 200, n_rows)")  # price/size < 500


def fence(code: str) -> str:
    return f"Here is the program:\n```python\n{code}```\n"


@needs_bwrap
def test_a_program_is_repaired_run_sandboxed_saved_and_rerun_without_the_model(tmp_path: Path, loopback, canary_key: str) -> None:
    def script(body: dict, n: int) -> Action:
        return Action(text=fence(GOOD_PROGRAM if len(body["messages"]) > 2 else BROKEN_PROGRAM))

    server = loopback(script=script)
    recipe = write_recipe(tmp_path / "p.yaml", table_recipe(server.base_url, method="program", rows=40))
    run = tmp_path / "run"
    assert main(["build", str(recipe), "--out", str(run), "--no-progress"]) == 0
    assert len(server.log) == 2
    repair = server.log[1].body["messages"]
    assert repair[2]["role"] == "assistant" and "uniform(100, 200" in repair[2]["content"]
    assert "broken_check" in repair[3]["content"] and "price / size_m2 >= 500" in repair[3]["content"]
    rejected = read_rejected(run)
    assert rejected[0]["reason"] == "invalid_table"
    saved = (run / "program.py").read_text()
    assert "def make_table" in saved and "uniform(2500, 4000" in saved
    table = pd.read_parquet(run / "dataset" / "data" / "train.parquet")
    assert len(table) == 40 and list(table.columns) == list(COLUMNS)
    report = json.loads((run / "manifest.json").read_text())["kind_report"]
    assert [a["repairs"] for a in report["program"]["attempts"]] == [0, 1] and report["program"]["accepted"]

    # Another row count and seed: the accepted program runs again, the model is not asked.
    assert main(["build", str(recipe), "--out", str(run), "--no-progress", "--count", "120", "--seed", "9"]) == 0
    assert len(server.log) == 2
    bigger = pd.read_parquet(run / "dataset" / "data" / "train.parquet")
    assert len(bigger) == 120 and bigger["house_id"].is_unique


@needs_bwrap
@pytest.mark.parametrize(("program", "reason"), [
    ("import socket\ndef make_table(n_rows, seed):\n    socket.create_connection(('127.0.0.1', 80))\n", "blocked"),
    ("def make_table(n_rows, seed):\n    while True:\n        pass\n", "timeout"),
    ("import os\ndef make_table(n_rows, seed):\n    return os.environ['FACTORY_TEST_KEY']\n", "program_failed"),
    ("def make_table(n_rows, seed):\n    return [1, 2, 3]\n", "program_failed"),
])
def test_a_hostile_or_broken_program_is_a_rejected_row_and_the_key_never_leaks(
        tmp_path: Path, loopback, canary_key: str, program: str, reason: str) -> None:
    server = loopback(script=lambda body, n: Action(text=fence(program)))
    recipe = write_recipe(tmp_path / "p.yaml", table_recipe(server.base_url, method="program", rows=5,
                                                            program={"repair_rounds": 1, "attempts": 2, "seconds": 3}))
    assert main(["build", str(recipe), "--out", str(tmp_path / "run"), "--no-progress"]) == 3  # incomplete: budget spent
    rejected = read_rejected(tmp_path / "run")
    assert [r["reason"] for r in rejected] == [reason] * 4
    repairs = [len(r.body["messages"]) > 2 for r in server.log]
    assert repairs == [False, True, False, True]  # two fresh programs, each repaired once
    assert not (tmp_path / "run" / "program.py").exists()
    sent = len(server.log)  # a re-run replays the attempts from the cache: the repair prompts come back the same
    assert main(["build", str(recipe), "--out", str(tmp_path / "run"), "--no-progress"]) == 3
    assert len(server.log) == sent
    for path in (tmp_path / "run").rglob("*"):
        if path.is_file():
            assert canary_key.encode() not in path.read_bytes(), path


@pytest.mark.parametrize(("change", "message"), [
    ({"checks": ["prise > 0"]}, r"checks: .*checks\[0\]: unknown column 'prise'"),
    ({"checks": ["__import__('os')"]}, r"unknown function __import__"),
    ({"columns": {**COLUMNS, "city": {"type": "category"}}}, r"columns\.city: .*needs `values:`"),
    ({"columns": {"size m2": {"type": "float"}}}, r"column names are letters"),
    ({"filters": [{"type": "quality"}]}, r"filters\[0\]: quality does not judge table rows; a 'table' recipe takes: exact_dedup, leakage"),
    ({"examples": [{"house_id": "H1"}]}, r"examples\[0\]: bad_pattern"),
    ({"generate": {"count": 5}}, r"a table recipe sets `rows:`"),
    ({"sources": [{"path": "docs"}]}, r"does not take documents"),
])
def test_a_bad_table_recipe_is_explained_before_any_model_is_called(tmp_path: Path, capsys, change: dict, message: str) -> None:
    recipe = write_recipe(tmp_path / "bad.yaml", table_recipe("http://127.0.0.1:9/v1", **change))
    assert main(["validate", str(recipe)]) == 1
    err = capsys.readouterr().err
    assert "bad.yaml" in err and re.search(message, err), err


def test_a_table_run_is_pushed_as_its_schema(tmp_path: Path, loopback, canary_key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from loopback_hub import LoopbackHub

    from factory.publish.hub import push_run

    server = loopback(script=batch_script)
    recipe = write_recipe(tmp_path / "houses.yaml", table_recipe(server.base_url, rows=10))
    assert main(["build", str(recipe), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    with LoopbackHub("hf_table_canary_token") as hub:
        hub.patch_clients(monkeypatch)
        monkeypatch.setenv("HF_TOKEN", "hf_table_canary_token")
        result = push_run(tmp_path / "run", "tester/houses", include_rejected=True)
        files = hub.files("tester/houses")
    pushed = pd.read_parquet(io.BytesIO(files["data/train-00000-of-00001.parquet"]))
    pd.testing.assert_frame_equal(pushed, pd.read_parquet(tmp_path / "run" / "dataset" / "data" / "train.parquet"))
    assert list(pushed.columns) == list(COLUMNS) and result["rows"]["train"] == 10
    card = files["README.md"].decode()
    assert "tabular-regression" in card and "## Table" in card
