"""Grounded recipes on real packaged models: the shipped docs-qa recipe on Qwen2.5-Coder-1.5B (the judge
included), and a grounded classification recipe on SmolLM2-135M."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest
from conftest import write_recipe

from factory.cli import main
from factory.run.manifest import load_manifest

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
PASSAGE = re.compile(r"<passage>\n(.*?)\n</passage>", re.DOTALL)


def sent_requests(run: Path) -> list[dict]:
    with sqlite3.connect(run / "requests.sqlite") as db:
        return [json.loads(r) for (r,) in db.execute("SELECT request FROM requests")]


def write_docs(tmp_path: Path, texts: dict[str, str]) -> None:
    (tmp_path / "docs").mkdir()
    for name, text in texts.items():
        (tmp_path / "docs" / name).write_text(text)


def test_the_shipped_docs_qa_recipe_runs_on_the_default_model(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    run = tmp_path / "docs-qa"
    code = main(["build", str(RECIPES / "docs-qa.yaml"), "--out", str(run), "--count", "2", "--max-requests", "3",
                 "--no-progress"])
    assert code in (0, 3), "complete, or the 3-request budget ran out before 2 pairs survived"
    manifest = load_manifest(run)
    assert manifest.generators[0]["model"] == "qwen2.5-coder-1.5b-instruct"
    assert (manifest.corpus[0].label, manifest.corpus[0].documents) == ("dataset-factory handbook", 6)
    passages = {json.loads(line)["text"] for line in (run / "corpus" / "passages.jsonl").read_text().splitlines()}
    requests = sent_requests(run)
    writing = [r for r in requests if "<passage>" in r["messages"][-1]["content"] and "Text to check" not in r["messages"][-1]["content"]]
    judging = [r for r in requests if "Text to check" in r["messages"][-1]["content"]]
    assert len(writing) == 3 and all(PASSAGE.search(r["messages"][-1]["content"]).group(1) in passages for r in writing)
    funnel = {s.stage: s for s in manifest.funnel}
    assert len(judging) == funnel["faithfulness"].rows_in, "every row reaching the judge was judged by the model"
    assert manifest.generators[0]["requests"] == len(writing) + len(judging)
    for line in (run / "generated.jsonl").read_text().splitlines():
        row = json.loads(line)
        assert row["fields"]["instruction"] and row["fields"]["response"] and row["meta"]["passage_id"]


def test_a_grounded_classification_recipe_runs_on_a_packaged_model(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    write_docs(tmp_path, {"kettle.txt": "The copper kettle boils water in three minutes and whistles when it is ready.",
                          "lamp.txt": "The brass desk lamp has a dimmer and a flexible neck for reading at night.",
                          "chair.txt": "The oak chair folds flat, seats one adult and weighs four kilograms."})
    recipe = {
        "name": "grounded-smol", "task": "classification", "seed": 2,
        "description": "Write a one-sentence customer review.",
        "labels": {"positive": {"description": "The customer is happy with the product."},
                   "negative": {"description": "The customer is unhappy with the product."}},
        "generate": {"per_label": 2, "max_requests": 6},
        "generators": [{"backend": "llamacpp", "model": "smollm2-135m-instruct", "max_tokens": 80, "n_ctx": 1024}],
        "sources": [{"path": "docs"}], "filters": [{"type": "exact_dedup"}, {"type": "leakage", "threshold": None}],
    }
    run = tmp_path / "run"
    assert main(["build", str(write_recipe(tmp_path / "r.yaml", recipe)), "--out", str(run), "--no-progress"]) in (0, 3)
    shown = [PASSAGE.search(r["messages"][-1]["content"]).group(1) for r in sent_requests(run)]
    assert len(shown) == 6 and set(shown[:3]) == {p.read_text() for p in (tmp_path / "docs").iterdir()}
    manifest = load_manifest(run)
    assert manifest.funnel[0].rows_in == 6 and manifest.corpus[0].passages == 3


def test_annotate_mode_labels_passages_with_votes_on_a_packaged_model(tmp_path: Path) -> None:
    """SmolLM2 labels real passages, three votes each, under the label grammar: every reply names a label."""
    pytest.importorskip("llama_cpp")
    write_docs(tmp_path, {"good.txt": "I love this kettle. It is fast, quiet and beautiful.",
                          "bad.txt": "Terrible lamp. It broke after one day and the store refused a refund.",
                          "fine.txt": "The chair arrived on time and my family enjoys it every evening."})
    recipe = {
        "name": "annotate-smol", "task": "classification", "seed": 2,
        "labels": {"positive": {"description": "The customer is happy with the product."},
                   "negative": {"description": "The customer is unhappy with the product."}},
        "generate": {"per_label": 2, "max_requests": 4, "few_shot": 1},
        "generators": [{"backend": "llamacpp", "model": "smollm2-135m-instruct", "max_tokens": 16, "n_ctx": 1024,
                        "temperature": 0.0}],
        "sources": [{"path": "docs"}], "grounding": {"mode": "annotate"},
        "annotate": {"votes": 3, "min_agreement": 0.6, "context": "Customer reviews of household products."},
    }
    run = tmp_path / "run"
    assert main(["build", str(write_recipe(tmp_path / "r.yaml", recipe)), "--out", str(run), "--no-progress"]) in (0, 3)
    requests = sent_requests(run)
    assert len(requests) == 4 * 3, "four passages asked, three votes each"
    texts = {p.read_text() for p in (tmp_path / "docs").iterdir()}
    parsed = [json.loads(line) for line in (run / "generated.jsonl").read_text().splitlines()]
    rejected = [json.loads(line) for line in (run / "rejected.jsonl").read_text().splitlines()]
    assert parsed, "at least one passage was labelled with enough agreement"
    for row in parsed:  # the row is the passage, labelled by its votes, weighted by their agreement
        votes = row["meta"]["annotation"]["votes"]
        assert row["fields"]["text"] in texts and row["label"] in ("positive", "negative")
        assert row["meta"]["weight"] == pytest.approx(votes.count(row["label"]) / 3, abs=1e-4)
        assert row["meta"]["weight"] >= 0.6
    assert {r["reason"] for r in rejected if r["stage"] == "parse"} <= {"low_agreement"}, "the grammar allows only a label"
