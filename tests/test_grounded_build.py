"""Grounded builds: prompts seeded with the user's passages, end to end against a loopback OpenAI server."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from conftest import classification_recipe, write_recipe
from loopback_openai import Action

from factory.cli import main
from factory.data.real import real_split
from factory.recipe_file import load_recipe
from factory.run.manifest import load_manifest

PASSAGE = re.compile(r"<passage>\n(.*?)\n</passage>", re.DOTALL)
TOPICS = ["kettle", "lamp", "chair", "blender", "toaster", "desk", "heater", "fan", "mirror", "clock", "rug", "shelf"]


def passage_of(body: dict) -> str:
    return PASSAGE.search(body["messages"][-1]["content"]).group(1)


def label_of(body: dict) -> str:
    return re.search(r'"label": "([^"]+)"', body["messages"][-1]["content"]).group(1)


def about_the_passage(body: dict, n: int) -> Action:
    """A row on the passage's subject, in new words (what a grounded generator should write)."""
    subject = passage_of(body).split()[1]
    mood = "love" if label_of(body) == "positive" else "regret buying"
    return Action(text=json.dumps({"label": label_of(body), "text": f"I {mood} my {subject}, seed {body['seed']}."}))


def write_docs(folder: Path, topics: list[str] = TOPICS) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for topic in topics:
        (folder / f"{topic}.txt").write_text(
            f"The {topic} in our catalogue is made of oak and brass, and ships in a box of recycled card. "
            f"Customers ask how long the {topic} lasts; we answer that it is built for ten years of use.")


def grounded(server, tmp_path: Path, **overrides) -> Path:
    write_docs(tmp_path / "docs")
    recipe = classification_recipe(server.base_url, sources=[{"path": "docs/*.txt"}], **overrides)
    return write_recipe(tmp_path / "recipe.yaml", recipe)


def test_every_prompt_shows_a_passage_each_used_once_before_any_is_reused(loopback, tmp_path, canary_key, capsys) -> None:
    server = loopback(script=about_the_passage)
    path = grounded(server, tmp_path)
    run = tmp_path / "run"
    assert main(["build", str(path), "--out", str(run), "--no-progress"]) == 0
    shown = [passage_of(r.body) for r in server.log]
    assert len(shown) >= 10
    first = shown[: len(TOPICS)]
    assert len(set(first)) == len(first), "no passage repeats before every passage was used"
    prompt = server.log[0].body["messages"][-1]["content"]
    assert "Take its subject from the source material" in prompt

    manifest = load_manifest(run)
    corpus = manifest.corpus[0]
    assert (corpus.label, corpus.documents, corpus.passages) == ("local documents 1", len(TOPICS), len(TOPICS))
    assert 0 < corpus.used <= len(TOPICS)
    generated = [json.loads(line) for line in (run / "generated.jsonl").read_text().splitlines()]
    ids = {json.loads(line)["id"] for line in (run / "corpus" / "passages.jsonl").read_text().splitlines()}
    assert all(r["meta"]["passage_id"] in ids and r["meta"]["document"].endswith(".txt") for r in generated)
    card = (run / "README.md").read_text()
    assert "## Sources" in card and "| local documents 1 | 12 | 12 |" in card
    assert str(tmp_path) not in card, "the card shows no local folder"

    # A re-run resumes from the cache: nothing is sent again, the same passages ground the same prompts.
    before = len(server.log)
    assert main(["build", str(path), "--out", str(run), "--no-progress"]) == 0
    assert len(server.log) == before


def test_dataset_rows_name_their_passage(loopback, tmp_path, canary_key) -> None:
    from datasets import load_from_disk

    server = loopback(script=about_the_passage)
    run = tmp_path / "run"
    assert main(["build", str(grounded(server, tmp_path)), "--out", str(run), "--no-progress"]) == 0
    dataset = load_from_disk(str(run / "dataset"))
    dataset = dataset["train"] if hasattr(dataset, "keys") else dataset
    passages = {json.loads(line)["id"]: json.loads(line)["text"]
                for line in (run / "corpus" / "passages.jsonl").read_text().splitlines()}
    for row in dataset:
        subject = row["text"].split()[-3].rstrip(",")
        assert subject in passages[row["source_passage"]], "each row's passage is the one it was written from"


def test_a_corpus_holding_validation_rows_is_refused_before_any_request(loopback, tmp_path, canary_key, capsys) -> None:
    server = loopback(script=about_the_passage)
    write_docs(tmp_path / "docs")
    real = pd.DataFrame({"text": [f"I {'love' if k % 2 else 'hate'} this thing number {k} with all my heart." for k in range(40)],
                         "label": ["positive" if k % 2 else "negative" for k in range(40)]})
    real.to_csv(tmp_path / "real.csv", index=False)
    (tmp_path / "docs" / "reviews.txt").write_text("\n\n".join(real["text"]))  # every real row, also held-out ones
    recipe = classification_recipe(server.base_url, sources=[{"path": "docs"}],
                                   real_data={"path": "real.csv", "train_per_label": 2})
    path = write_recipe(tmp_path / "recipe.yaml", recipe)
    assert main(["build", str(path), "--out", str(tmp_path / "run"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "contain a real validation row" in err and "exclude_real_validation: true" in err
    assert server.log == []

    recipe["sources"] = [{"path": "docs", "exclude_real_validation": True}]
    write_recipe(path, recipe)
    assert main(["build", str(path), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    validation = {r.text for r in real_split(load_recipe(path)).validation}
    shown = " ".join(passage_of(r.body) for r in server.log)
    assert len(validation) == 36 and not any(text in shown for text in validation), "no validation row reached a prompt"
    assert load_manifest(tmp_path / "run").corpus[0].validation_overlap >= 1


def test_rewrite_mode_rejects_an_unchanged_passage(loopback, tmp_path, canary_key) -> None:
    def lazy(body: dict, n: int) -> Action:  # every other reply hands the passage back unchanged
        text = passage_of(body) if body["seed"] % 2 else f"A reworded take {body['seed']} on " + passage_of(body)[:60]
        return Action(text=json.dumps({"label": label_of(body), "text": text}))

    server = loopback(script=lazy)
    path = grounded(server, tmp_path, grounding={"mode": "rewrite"}, filters=[{"type": "exact_dedup"}])
    run = tmp_path / "run"
    assert main(["build", str(path), "--out", str(run), "--no-progress"]) == 0
    assert "Rewrite this passage so that its label is" in server.log[0].body["messages"][-1]["content"]
    rejected = [json.loads(line) for line in (run / "rejected.jsonl").read_text().splitlines()]
    assert any(r["reason"] == "copied_passage" for r in rejected)


@pytest.mark.parametrize("span, dropped", [(12, True), (None, False)])
def test_leakage_drops_rows_that_copy_a_long_span_of_their_passage(loopback, tmp_path, canary_key, span, dropped) -> None:
    def copier(body: dict, n: int) -> Action:
        words = passage_of(body).split()
        return Action(text=json.dumps({"label": label_of(body), "text": f"Seed {body['seed']}: " + " ".join(words[:15])}))

    server = loopback(script=copier)
    leakage = {"type": "leakage", "source_span": span, "threshold": None}
    path = grounded(server, tmp_path, filters=[leakage], generate={"per_label": 2, "max_requests": 6})
    run = tmp_path / "run"
    main(["build", str(path), "--out", str(run), "--no-progress"])
    reasons = [json.loads(line)["reason"] for line in (run / "rejected.jsonl").read_text().splitlines()]
    assert ("copied_source" in reasons) is dropped
    if dropped:
        funnel = {s.stage: s for s in load_manifest(run).funnel}
        assert funnel["leakage"].stats["copied_source"] >= 1


def qa_recipe(server, tmp_path: Path, **overrides) -> Path:
    write_docs(tmp_path / "docs")
    recipe = {
        "name": "docs-qa", "task": "instruction", "seed": 1, "description": "Questions customers ask about our catalogue.",
        "generate": {"count": 6, "batch_size": 4},
        "generators": classification_recipe(server.base_url)["generators"],
        "sources": [{"path": "docs"}], "grounding": {"mode": "qa"},
        "filters": [{"type": "exact_dedup"}, {"type": "faithfulness"}], **overrides,
    }
    return write_recipe(tmp_path / "qa.yaml", recipe)


def qa_server(body: dict, n: int) -> Action:
    """Writes pairs (every third answer invents a fact) and judges them (a claim about titanium is unsupported)."""
    system, user = body["messages"][0]["content"], body["messages"][-1]["content"]
    if system.startswith("You check a text"):
        row = user.split("Text to check:")[1]
        verdict = "maybe" if "broken verdict" in row else "titanium" not in row
        return Action(text=json.dumps({"supported": verdict, "reason": "checked against the passage"}))
    subject = passage_of(body).split()[1]
    if '"query"' in user:
        return Action(text=json.dumps({"query": f"how long does a {subject} last {body['seed'] % 97}"}))
    answer = f"The {subject} is made of titanium." if body["seed"] % 3 == 0 else f"The {subject} is built for ten years of use."
    return Action(text=json.dumps({"instruction": f"How long is the {subject} built to last ({body['seed'] % 89})?",
                                   "response": answer}))


def test_grounded_qa_pairs_are_judged_against_their_passage(loopback, tmp_path, canary_key) -> None:
    server = loopback(script=qa_server)
    path = qa_recipe(server, tmp_path)
    run = tmp_path / "run"
    assert main(["build", str(path), "--out", str(run), "--no-progress"]) == 0
    prompt = server.log[0].body["messages"][-1]["content"]
    assert "Use only facts stated in the passage" in prompt
    rejected = [json.loads(line) for line in (run / "rejected.jsonl").read_text().splitlines()]
    unsupported = [r for r in rejected if r["reason"] == "unsupported"]
    assert unsupported and all(r["detail"] == "checked against the passage" for r in unsupported)
    kept = [json.loads(line) for line in (run / "generated.jsonl").read_text().splitlines()]
    from datasets import load_from_disk

    dataset = load_from_disk(str(run / "dataset"))
    dataset = dataset["train"] if hasattr(dataset, "keys") else dataset
    assert len(dataset) == 6 and not any("titanium" in r["response"] for r in dataset)
    assert len(kept) > len(dataset)
    judged = [r for r in server.log if r.body["messages"][0]["content"].startswith("You check a text")]
    manifest = load_manifest(run)
    assert manifest.generators[0]["requests"] == len(server.log), "the judge's requests are counted"
    assert {s.stage: s for s in manifest.funnel}["faithfulness"].dropped["unsupported"] == len(unsupported)
    assert len(judged) == len({r.body["messages"][-1]["content"] for r in judged}), "each row is judged once"

    before = len(server.log)
    assert main(["build", str(path), "--out", str(run), "--no-progress"]) == 0
    assert len(server.log) == before, "a re-run sends neither the pairs nor the judgements again"


def test_an_unreadable_verdict_is_a_judge_failure_with_a_reason(loopback, tmp_path, canary_key) -> None:
    def broken(body: dict, n: int) -> Action:
        if body["messages"][0]["content"].startswith("You check a text"):
            return Action(text="I think it is probably fine")
        return qa_server(body, n)

    server = loopback(script=broken)
    run = tmp_path / "run"
    path = qa_recipe(server, tmp_path, generate={"count": 3, "max_requests": 4})
    assert main(["build", str(path), "--out", str(run), "--no-progress"]) == 3  # nothing survives: the budget runs out
    rejected = [json.loads(line) for line in (run / "rejected.jsonl").read_text().splitlines()]
    failed = [r for r in rejected if r["reason"] == "judge_failed"]
    assert failed and "unreadable verdict" in failed[0]["detail"]


def test_query_mode_pairs_a_search_query_with_its_passage(loopback, tmp_path, canary_key) -> None:
    from datasets import load_from_disk

    server = loopback(script=qa_server)
    run = tmp_path / "run"
    path = qa_recipe(server, tmp_path, grounding={"mode": "query"}, filters=[{"type": "exact_dedup"}])
    assert main(["build", str(path), "--out", str(run), "--no-progress"]) == 0
    assert "search query" in server.log[0].body["messages"][-1]["content"]
    dataset = load_from_disk(str(run / "dataset"))
    dataset = dataset["train"] if hasattr(dataset, "keys") else dataset
    passages = {json.loads(line)["id"]: json.loads(line)["text"]
                for line in (run / "corpus" / "passages.jsonl").read_text().splitlines()}
    for row in dataset:
        assert row["instruction"].startswith("how long does a") and row["response"] == passages[row["source_passage"]]


def test_a_judge_must_name_a_generator_of_the_recipe(tmp_path, capsys) -> None:
    path = write_recipe(tmp_path / "r.yaml", {
        "name": "x", "task": "instruction", "sources": [{"path": "docs"}],
        "filters": [{"type": "faithfulness", "generator": "gpt-judge"}]})
    assert main(["validate", str(path)]) == 1
    assert "faithfulness.generator 'gpt-judge' is not a generator of this recipe" in capsys.readouterr().err
