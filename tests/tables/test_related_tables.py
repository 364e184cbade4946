"""method: related — several tables joined by keys: parents first, children use only their keys,
orphans are rejected rows, one dataset config per table, pushed as such."""

from __future__ import annotations

import io
import json
import random
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from conftest import write_recipe
from loopback_openai import Action

from factory.cli import main

TABLES = {
    "locations": {"rows": 6, "primary_key": "location_id", "description": "Neighbourhoods.",
                  "columns": {"location_id": {"type": "string", "pattern": r"L\d{2}"},
                              "city": {"type": "category", "values": ["Lyon", "Lille"]}}},
    "house_types": {"rows": 3, "primary_key": "type_id",
                    "columns": {"type_id": {"type": "int", "min": 1, "max": 99}, "name": {"type": "string"}}},
    "houses": {"rows": 24, "primary_key": "house_id",
               "foreign_keys": {"location_id": "locations.location_id", "type_id": "house_types.type_id"},
               "checks": ["price > 0", "mean(price) > 1000"],
               "columns": {"house_id": {"type": "string"}, "location_id": {"type": "string"}, "type_id": {"type": "int"},
                           "price": {"type": "float"}}},
}


def recipe(base_url: str, **changes: Any) -> dict[str, Any]:
    return {"name": "estate", "task": "table", "method": "related", "seed": 2, "batch_rows": 4,
            "description": "A small estate agency's database.", "tables": TABLES,
            "generators": [{"name": "loop", "backend": "openai", "model": "m", "base_url": base_url, "api_key_env": "FACTORY_TEST_KEY",
                            "concurrency": 2, "timeout": 5.0, "max_attempts": 2, "backoff": 0.01}]} | changes


def script(body: dict, _: int) -> Action:
    """Rows for whichever table the prompt asks for; a child's keys are taken from its prompt, with an
    orphan planted in every other batch."""
    prompt = body["messages"][-1]["content"]
    rng = random.Random(body["seed"])
    table = re.search(r"Table (\w+):", prompt).group(1)
    if table == "locations":
        rows = [{"location_id": f"L{rng.randint(0, 99):02d}", "city": rng.choice(["Lyon", "Lille"])} for _ in range(4)]
    elif table == "house_types":
        rows = [{"type_id": rng.randint(1, 99), "name": rng.choice(["flat", "villa", "loft"])} for _ in range(3)]
    else:
        keys = {column: json.loads(values) for column, values in re.findall(r"- (\w+) must be one of these \S+ values: (\[.*\])", prompt)}
        rows = [{"house_id": f"H{rng.randint(0, 10**6)}", "location_id": rng.choice(keys["location_id"]),
                 "type_id": rng.choice(keys["type_id"]), "price": rng.uniform(5e4, 5e5)} for _ in range(4)]
        if body["seed"] % 2:
            rows[0]["location_id"] = "L999"  # not a key of locations
    return Action(text=json.dumps({"rows": rows}))


def test_parents_come_first_and_children_only_use_their_keys(tmp_path: Path, loopback, canary_key: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    server = loopback(script=script)
    path = write_recipe(tmp_path / "estate.yaml", recipe(server.base_url))
    run = tmp_path / "run"
    assert main(["build", str(path), "--out", str(run), "--no-progress"]) == 0

    asked = [re.search(r"Table (\w+):", r.body["messages"][-1]["content"]).group(1) for r in server.log]
    first_child = asked.index("houses")
    assert {"locations", "house_types"} <= set(asked[:first_child]) and "houses" not in asked[:first_child]
    assert set(asked[first_child:]) == {"houses"}, "no parent request after the children started"

    assert json.loads((run / "dataset" / "configs.json").read_text()) == ["locations", "house_types", "houses"]
    tables = {name: pd.read_parquet(run / "dataset" / "data" / name / "train.parquet") for name in TABLES}
    assert {name: len(t) for name, t in tables.items()} == {"locations": 6, "house_types": 3, "houses": 24}
    assert tables["locations"]["location_id"].is_unique and tables["houses"]["house_id"].is_unique
    assert set(tables["houses"]["location_id"]) <= set(tables["locations"]["location_id"])
    assert set(tables["houses"]["type_id"]) <= set(tables["house_types"]["type_id"])
    rejected = [json.loads(line) for line in (run / "rejected.jsonl").read_text().splitlines()]
    orphans = [r for r in rejected if r["reason"] == "orphan_key"]
    assert orphans and all("L999" in r["detail"] for r in orphans)
    manifest = json.loads((run / "manifest.json").read_text())
    assert [s["stage"] for s in manifest["funnel"]] == ["parse", "exact_dedup", "target", "foreign_keys"]
    assert manifest["funnel"][-1]["kept"] == 33 and manifest["funnel"][-1]["dropped"] == {}
    report = manifest["kind_report"]["tables"]
    assert report["houses"]["foreign_keys"] == TABLES["houses"]["foreign_keys"] and report["houses"]["table_checks"][0]["passed"]
    card = (run / "README.md").read_text()
    assert "## Tables" in card and 'load_dataset("<owner>/estate", "houses", split="train")' in card

    # A re-run sends nothing: the parents' keys, and so the children's prompts, come back the same.
    sent = len(server.log)
    assert main(["build", str(path), "--out", str(run), "--no-progress"]) == 0
    assert len(server.log) == sent
    pd.testing.assert_frame_equal(pd.read_parquet(run / "dataset" / "data" / "houses" / "train.parquet"), tables["houses"])

    from loopback_hub import LoopbackHub

    from factory.publish.hub import push_run

    with LoopbackHub("hf_related_canary") as hub:
        hub.patch_clients(monkeypatch)
        monkeypatch.setenv("HF_TOKEN", "hf_related_canary")
        result = push_run(run, "tester/estate")
        files = hub.files("tester/estate")
    assert result["rows"] == {"locations": 6, "house_types": 3, "houses": 24}
    for name, table in tables.items():
        (shard,) = [f for f in files if f.startswith(f"{name}/") and f.endswith(".parquet")]
        pd.testing.assert_frame_equal(pd.read_parquet(io.BytesIO(files[shard])), table)
    configs = {c["config_name"] for c in yaml.safe_load(files["README.md"].decode().split("---")[1])["configs"]}
    assert configs == set(TABLES)


@pytest.mark.parametrize(("change", "message"), [
    ({"houses": {**TABLES["houses"], "foreign_keys": {"location_id": "locations.city"}}}, r"must be the primary key of 'locations'"),
    ({"houses": {**TABLES["houses"], "foreign_keys": {"location_id": "towns.id"}}}, r"is not 'table.column' of a table"),
    ({"houses": {**TABLES["houses"], "foreign_keys": {"type_id": "house_types.type_id", "location_id": "locations.location_id"},
                 "columns": {**TABLES["houses"]["columns"], "type_id": {"type": "string"}}}}, r"a string column cannot hold"),
    ({"houses": {**TABLES["houses"], "primary_key": "id"}}, r"primary_key 'id' is not a column"),
])
def test_bad_keys_are_explained_before_any_model_is_called(tmp_path: Path, capsys, change: dict, message: str) -> None:
    path = write_recipe(tmp_path / "bad.yaml", recipe("http://127.0.0.1:9/v1", tables={**TABLES, **change}))
    assert main(["validate", str(path)]) == 1
    assert re.search(message, capsys.readouterr().err)


def test_parents_must_be_listed_first(tmp_path: Path, capsys) -> None:
    reordered = {"houses": TABLES["houses"], "locations": TABLES["locations"], "house_types": TABLES["house_types"]}
    path = write_recipe(tmp_path / "bad.yaml", recipe("http://127.0.0.1:9/v1", tables=reordered))
    assert main(["validate", str(path)]) == 1
    assert "'locations' must be listed before 'houses'" in capsys.readouterr().err
