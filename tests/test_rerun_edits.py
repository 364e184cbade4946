"""Editing a recipe between builds, or losing the server, never costs finished work (through the CLI,
against the loopback server): a failed re-run keeps the complete dataset and says why it stopped,
rejected.jsonl describes this build only, a run directory belongs to one recipe, and equivalent
endpoints share their cached replies."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import datasets
import pandas as pd
import pytest
from conftest import classification_recipe, scripted, write_recipe
from loopback_openai import Action

from factory.cli import main

COLUMNS = ["id", "text", "label", "generator", "model", "axis_product", "axis_length", "weight"]


def _build(recipe: Path, out: Path, *extra: str) -> int:
    return main(["build", str(recipe), "--out", str(out), "--no-progress", *extra])


def _ids(path: Path) -> list[str]:
    return pd.read_parquet(path)["id"].tolist()


def test_a_rerun_against_a_dead_server_keeps_the_complete_dataset_and_says_why(tmp_path: Path, loopback, canary_key, capsys) -> None:
    server = loopback(script=scripted)
    recipe = classification_recipe(server.base_url)
    path = write_recipe(tmp_path / "r.yaml", recipe)
    out = tmp_path / "run"
    assert _build(path, out) == 0
    complete = _ids(out / "dataset" / "data" / "train.parquet")
    assert len(complete) == 10
    server.__exit__(None, None, None)  # the server goes away; the user edits the description and builds again
    capsys.readouterr()
    path = write_recipe(path, {**recipe, "description": "Write a one-sentence review of a household product."})
    assert _build(path, out, "--max-requests", "20") == 3
    error = capsys.readouterr().err
    assert "every request of the last round failed" in error and "connection" in error and "base_url" in error
    partial = json.loads((out / "partial" / "manifest.json").read_text())
    assert partial["status"] == "requests_failed" and partial["budget"]["used"] < 20  # stopped early
    assert partial["generators"][0]["failures"] == {"connection": partial["budget"]["used"]}
    assert f"{out / 'dataset'}" in error and "previous build (10 rows" in error
    # The complete dataset, its manifest and card stay; the partial one beside it loads, with every column.
    assert _ids(out / "dataset" / "data" / "train.parquet") == complete
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"
    assert len(datasets.load_from_disk(str(out / "dataset"))) == 10
    empty = datasets.load_from_disk(str(out / "partial" / "dataset"))
    assert len(empty) == 0 and empty.column_names == COLUMNS

    # The same dead server in a fresh folder: a 0-row dataset that loads, with the kind's schema.
    assert _build(path, tmp_path / "fresh", "--max-requests", "20") == 3
    fresh = datasets.load_from_disk(str(tmp_path / "fresh" / "dataset"))
    assert len(fresh) == 0 and fresh.column_names == COLUMNS and fresh.features["text"].dtype == "string"


def test_rejected_rows_are_this_builds_only(tmp_path: Path, loopback, canary_key) -> None:
    server = loopback(script=scripted)
    recipe = classification_recipe(server.base_url, generate={"per_label": 3, "batch_size": 8})
    path = write_recipe(tmp_path / "r.yaml", recipe)
    out = tmp_path / "run"
    assert _build(path, out) == 0
    over = [r for r in map(json.loads, (out / "rejected.jsonl").read_text().splitlines()) if r["reason"] == "over_target"]
    assert over, "the first build must leave rows over the target for this test to mean anything"
    # A higher target: the rows that were over it are in the dataset now, and no longer listed as dropped.
    path = write_recipe(path, {**recipe, "generate": {"per_label": 5, "batch_size": 8}})
    assert _build(path, out) == 0
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    kept = set(_ids(out / "dataset" / "data" / "train.parquet"))
    assert not kept & {r["id"] for r in rejected}
    assert any(r["label"] == "positive" for r in rejected), "no dropped row has the label: the rename check would be empty"
    # A renamed label: no rejected row carries the old name.
    labels = recipe["labels"]
    renamed = {**recipe, "generate": {"per_label": 5, "batch_size": 8},
               "labels": {"favourable": labels["positive"], "negative": labels["negative"]}}
    assert _build(write_recipe(path, renamed), out) in (0, 3)
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    assert all(r.get("label") != "positive" for r in rejected)


def test_a_run_directory_belongs_to_one_recipe(tmp_path: Path, loopback, canary_key, capsys) -> None:
    server = loopback(script=scripted)
    first = write_recipe(tmp_path / "a.yaml", classification_recipe(server.base_url))
    other = write_recipe(tmp_path / "b.yaml", classification_recipe(server.base_url, name="other-recipe",
                                                                    generate={"per_label": 2}))
    out = tmp_path / "run"
    assert _build(first, out) == 0
    before = (out / "manifest.json").read_text()
    capsys.readouterr()
    assert _build(other, out) == 1
    error = capsys.readouterr().err
    assert "holds the run of recipe 'tiny'" in error and "'other-recipe'" in error and "--force" in error
    assert (out / "manifest.json").read_text() == before  # nothing of the first run was touched
    assert _build(other, out, "--force") == 0
    assert "replaced the run of recipe 'tiny'" in capsys.readouterr().err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["name"] == "other-recipe" and manifest["rows"] == 4
    generated = [json.loads(line) for line in (out / "generated.jsonl").read_text().splitlines()]
    assert len(generated) == len({g["id"] for g in generated}) <= 8  # only the second recipe's rows


def test_equivalent_endpoints_share_their_cached_replies_and_a_rerun_counts_them(
        tmp_path: Path, loopback, canary_key, capsys) -> None:
    server = loopback(script=scripted)
    recipe = classification_recipe(server.base_url)
    path = write_recipe(tmp_path / "r.yaml", recipe)
    out = tmp_path / "run"
    assert _build(path, out) == 0
    sent = len(server.log)
    for spelling in (f"http://localhost:{server.port}/v1/", f"http://LOCALHOST:{server.port}/v1"):
        generators = [{**recipe["generators"][0], "base_url": spelling}]
        assert _build(write_recipe(path, {**recipe, "generators": generators}), out) == 0
        assert len(server.log) == sent, spelling
    assert f"cache: {sent} replies reused" in capsys.readouterr().out
    # A narrower recipe leaves replies in the cache unused, and says so.
    assert _build(write_recipe(path, {**recipe, "generate": {"per_label": 2}}), out) == 0
    said = capsys.readouterr().out
    assert "cached replies not used by this recipe" in said


def test_an_edit_that_leaves_a_prompts_messages_as_they_were_leaves_its_reply_usable(
        tmp_path: Path, loopback, canary_key) -> None:
    """One more value on an axis moves prompts: the same messages come up at other indexes. Their seeds come
    from their messages (and their rank among identical ones), so their cached replies still answer them."""
    server = loopback(script=scripted)
    recipe = classification_recipe(server.base_url, generate={"per_label": 10})
    path = write_recipe(tmp_path / "r.yaml", recipe)
    out = tmp_path / "run"
    assert _build(path, out) == 0
    first = Counter(json.dumps(r.body["messages"]) for r in server.log)
    sent = len(server.log)
    assert _build(write_recipe(path, {**recipe, "axes": {**recipe["axes"], "product": [*recipe["axes"]["product"], "desk"]}}),
                  out) == 0
    again = Counter(json.dumps(r.body["messages"]) for r in server.log[sent:])
    reused = json.loads((out / "manifest.json").read_text())["cache"]["reused"]
    # Keyed by their place in the run, only the prompts that kept both their messages and their index were
    # reused (5 here); keyed by their messages, every prompt the first build had already asked for is.
    assert reused >= 8, f"only {reused} replies reused"
    assert not {m for m in again if first[m] >= 3}, "messages the first build sent three times were sent again"


@pytest.mark.parametrize(("action", "kind", "advice"), [
    (Action(status=401, text="invalid api key"), "(auth ", "api_key_env"),
    (Action(status=429, body=b'{"error": {"code": "insufficient_quota", "message": "You exceeded your quota"}}'),
     "(quota ", "quota or credit is spent"),
])
def test_a_refused_key_or_a_spent_quota_stops_the_build_after_one_round(
        tmp_path: Path, loopback, canary_key, capsys, action: Action, kind: str, advice: str) -> None:
    server = loopback(script=lambda body, n: action)
    recipe = classification_recipe(server.base_url, generate={"per_label": 2, "max_requests": 40})
    assert _build(write_recipe(tmp_path / "r.yaml", recipe), tmp_path / "run") == 3
    error = capsys.readouterr().err
    assert "every request of the last round failed" in error and kind in error and advice in error
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "requests_failed" and manifest["budget"]["used"] <= 8  # one round, not 40
    assert len(server.log) <= manifest["budget"]["used"]  # neither is retried: waiting cures neither
    if kind == "(quota ":  # spent credit stops at once: only the requests already in flight (concurrency 4) went
        assert len(server.log) <= 4


def test_a_renamed_recipe_says_where_its_old_run_is(tmp_path: Path, loopback, canary_key, caplog) -> None:
    server = loopback(script=scripted)
    recipe = classification_recipe(server.base_url)
    path = write_recipe(tmp_path / "r.yaml", recipe)
    assert _build(path, tmp_path / "runs" / "tiny") == 0
    assert _build(write_recipe(path, {**recipe, "name": "tiny-v2"}), tmp_path / "runs" / "tiny-v2") == 0
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "was built before as recipe 'tiny'" in said and f"--out {tmp_path / 'runs' / 'tiny'}" in said
