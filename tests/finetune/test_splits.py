"""Splits: stratified by label, near-duplicates and passages never straddle two splits, written and pushed as real splits."""

from __future__ import annotations

import random
from collections import Counter

import datasets
import pytest
from conftest import classification_recipe, write_recipe
from loopback_hub import LoopbackHub

from factory.cli import main
from factory.publish.hub import push_run, split_card
from factory.recipe_file import parse_recipe
from factory.records import Record
from factory.splits import assign_splits
from factory.tasks.base import Recipe

WORDS = ("amber velvet kettle orbit lantern cedar pixel harbor meadow copper falcon quartz summit willow ember canyon "
         "glacier maple nimbus otter prairie radish saffron tundra umber violet walnut yarrow zephyr basil").split()

WHOLE_ROW = Recipe.split_text  # what every kind but preference groups on: all its text fields


def planted_rows(seed: int = 0) -> tuple[list[Record], dict[str, int]]:
    """Two labels; 12 clusters of three near-copies (one word changed) and 48 distinct rows; cluster per id."""
    rng = random.Random(seed)
    rows, cluster = [], {}
    for k in range(60):
        label = "positive" if k % 2 else "negative"
        text = " ".join(rng.sample(WORDS, 12))
        copies = 3 if k < 12 else 1
        for c in range(copies):
            variant = text.split()
            if c:
                variant[c] = rng.choice(WORDS)
            record = Record({"text": " ".join(variant)}, label=label, id=f"r{k}-{c}")
            rows.append(record)
            cluster[record.id] = k
    rng.shuffle(rows)
    return rows, cluster


def label_of(record: Record) -> str:
    return record.label or ""


def test_near_duplicates_never_straddle_two_splits_and_labels_are_stratified() -> None:
    rows, cluster = planted_rows()
    split_of, report = assign_splits(rows, label_of, {"validation": 0.2, "test": 0.2}, 0.6, seed=1, text=WHOLE_ROW)
    per_cluster: dict[int, set[str]] = {}
    for record in rows:
        per_cluster.setdefault(cluster[record.id], set()).add(split_of[record.id])
    assert all(len(splits) == 1 for splits in per_cluster.values()), "a near-duplicate cluster is in one split"
    counts = Counter((split_of[r.id], r.label) for r in rows)
    for split in ("validation", "test"):
        for label in ("positive", "negative"):
            assert counts[(split, label)] == 8, "20% of each label's 42 rows, rounded: 8 (groups of 3 fit around singles)"
    assert report["rows"] == {"train": 52, "validation": 16, "test": 16}
    assert report["groups"] == 60 and report["largest_group"] == 3
    # Seeded: the same seed, the same split; another seed, another one.
    assert assign_splits(rows, label_of, {"validation": 0.2, "test": 0.2}, 0.6, seed=1, text=WHOLE_ROW)[0] == split_of
    assert assign_splits(rows, label_of, {"validation": 0.2, "test": 0.2}, 0.6, seed=2, text=WHOLE_ROW)[0] != split_of


def test_counts_are_spread_over_labels_and_rows_of_one_passage_stay_together() -> None:
    rows = [Record({"text": f"{WORDS[k % 30]} {WORDS[(k * 7) % 30]} number {k}"}, label="a" if k < 30 else "b",
                   id=f"r{k}", meta={"passage_id": f"p{k // 2}"}) for k in range(40)]
    split_of, report = assign_splits(rows, label_of, {"validation": 0, "test": 10}, 0.9, seed=0, text=WHOLE_ROW)
    assert report["per_bucket"]["test"] == {"a": 8, "b": 2}, "10 rows in proportion to the labels (30:10)"
    for k in range(0, 40, 2):
        assert split_of[f"r{k}"] == split_of[f"r{k + 1}"], "rows from one passage share a split"


def test_split_settings_are_checked_when_the_recipe_loads() -> None:
    base = {"name": "x", "task": "instruction", "examples": [{"instruction": "a", "response": "b"}]}
    with pytest.raises(Exception, match="fractions must leave rows for train"):
        parse_recipe({**base, "splits": {"validation": 0.5, "test": 0.5}})
    with pytest.raises(Exception, match="neither a fraction below 1 nor a whole number"):
        parse_recipe({**base, "splits": {"test": 2.5}})
    with pytest.raises(Exception, match="give validation and/or test"):
        parse_recipe({**base, "splits": {}})
    related = {"name": "t", "task": "table", "method": "related", "splits": {"test": 0.1},
               "tables": {"a": {"rows": 2, "columns": {"id": {"type": "int"}}, "primary_key": "id"}}}
    with pytest.raises(Exception, match="related tables are written whole"):
        parse_recipe(related)


def test_a_build_writes_and_pushes_real_splits(loopback, tmp_path, canary_key, monkeypatch) -> None:
    server = loopback()
    recipe = classification_recipe(server.base_url, generate={"per_label": 10}, splits={"validation": 0.2, "test": 0.2})
    run = tmp_path / "run"
    assert main(["build", str(write_recipe(tmp_path / "r.yaml", recipe)), "--out", str(run), "--no-progress"]) == 0
    saved = datasets.load_from_disk(str(run / "dataset"))
    assert {name: len(split) for name, split in saved.items()} == {"train": 12, "validation": 4, "test": 4}
    assert sorted(p.name for p in (run / "dataset" / "data").iterdir()) == ["test.parquet", "train.parquet", "validation.parquet"]
    assert Counter(saved["test"]["label"]) == {"positive": 2, "negative": 2}
    assert not set(saved["train"]["id"]) & set(saved["test"]["id"])
    card = (run / "README.md").read_text()
    assert "## Splits" in card and "| test | 4 | negative: 2, positive: 2 |" in card

    token = "hf_canary_splits_DO_NOT_LEAK"
    with LoopbackHub(token) as hub:
        hub.patch_clients(monkeypatch)
        monkeypatch.setenv("HF_TOKEN", token)
        result = push_run(run, "tester/split-data")
        files = hub.files("tester/split-data")
    assert result["rows"] == {"train": 12, "validation": 4, "test": 4}
    assert {f.split("-")[0] for f in files if f.startswith("data/")} == {"data/train", "data/validation", "data/test"}
    meta, _, _ = split_card(files["README.md"].decode())
    assert {s["split"] for s in meta["configs"][0]["data_files"]} == {"train", "validation", "test"}
