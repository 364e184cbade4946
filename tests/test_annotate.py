"""grounding.mode annotate: the model labels the user's own passages, by several votes, against a loopback server."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from conftest import classification_recipe, write_recipe
from loopback_openai import Action

from factory.cli import main
from factory.recipe_file import load_recipe
from factory.run.manifest import load_manifest

TEXT = re.compile(r"<text>\n(.*?)\n</text>", re.DOTALL)
LIKED = ["kettle", "lamp", "chair", "blender", "toaster", "desk"]
DISLIKED = ["heater", "fan", "mirror", "clock", "rug", "shelf"]
UNSURE = "The stool is a stool."  # each vote names the label it read first: the votes split
STRANGE = "The vase came in a box."  # the annotator names no label of the recipe


def write_docs(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for topic in LIKED:
        (folder / f"{topic}.txt").write_text(f"I love this {topic}, it works every day.")
    for topic in DISLIKED:
        (folder / f"{topic}.txt").write_text(f"The {topic} broke in a week; I regret it.")
    (folder / "stool.txt").write_text(UNSURE)
    (folder / "vase.txt").write_text(STRANGE)


def annotator(body: dict, n: int) -> Action:
    """Labels by keyword, as a capable model would; hesitates on UNSURE and is lost on STRANGE."""
    user = body["messages"][-1]["content"]
    text = TEXT.search(user).group(1)
    listed = re.findall(r"^- (\w+): ", user, re.MULTILINE)
    if text == STRANGE:
        return Action(text=json.dumps({"label": "banana"}))
    label = listed[0] if text == UNSURE else "positive" if "love" in text else "negative"
    return Action(text=json.dumps({"label": label}))


def annotating(server, tmp_path: Path, **overrides) -> Path:
    write_docs(tmp_path / "docs")
    recipe = classification_recipe(server.base_url, sources=[{"path": "docs/*.txt"}], grounding={"mode": "annotate"},
                                   axes={}, **overrides)
    recipe["generate"] = {**recipe["generate"], "per_label": 6}
    return write_recipe(tmp_path / "recipe.yaml", recipe)


def test_passages_are_labelled_by_votes_and_kept_as_they_are(loopback, tmp_path, canary_key) -> None:
    server = loopback(script=annotator)
    path = annotating(server, tmp_path, annotate={"votes": 3, "min_agreement": 0.7})
    run = tmp_path / "run"
    assert main(["build", str(path), "--out", str(run), "--no-progress"]) == 0

    rows = pd.read_parquet(next((run / "dataset").rglob("*.parquet")))
    assert sorted(rows["label"].value_counts().items()) == [("negative", 6), ("positive", 6)]
    for row in rows.itertuples():  # the row is the passage itself, with the label the votes chose
        assert ("love" in row.text) == (row.label == "positive")
    assert set(rows["origin"]) == {"annotate"} and set(rows["weight"]) == {1.0}

    rejected = {json.loads(line)["text"]: json.loads(line) for line in (run / "rejected.jsonl").read_text().splitlines()}
    assert rejected[UNSURE]["reason"] == "low_agreement"
    assert rejected[STRANGE]["reason"] == "unknown_label" and "no vote of 3" in rejected[STRANGE]["detail"]

    # Each passage took three votes; the votes of one wave share their whole opening (few-shot draw and label order).
    bodies = [r.body for r in server.log]
    per_text: dict[str, list[str]] = {}
    for body in bodies:
        user = body["messages"][-1]["content"]
        per_text.setdefault(TEXT.search(user).group(1), []).append(user)
    assert {len(v) for v in per_text.values()} == {3}
    openings = {user.split("<text>")[0] for users in per_text.values() for user in users}
    assert len(openings) == 3, "one opening per vote, whatever the passage"
    assert all(b["response_format"]["json_schema"]["schema"]["properties"]["label"]["enum"] for b in bodies)

    manifest = load_manifest(run)
    assert manifest.funnel[0].dropped["low_agreement"] == 1

    # A re-run resumes from the cache: no vote is asked again.
    before = len(server.log)
    assert main(["build", str(path), "--out", str(run), "--no-progress"]) == 0
    assert len(server.log) == before


def test_a_split_vote_is_kept_with_its_agreement_as_weight_when_the_threshold_allows(loopback, tmp_path, canary_key) -> None:
    server = loopback(script=annotator)
    path = annotating(server, tmp_path, annotate={"votes": 3, "min_agreement": 0.3})
    run = tmp_path / "run"
    assert main(["build", str(path), "--out", str(run), "--no-progress"]) == 0
    generated = [json.loads(line) for line in (run / "generated.jsonl").read_text().splitlines()]
    unsure = [r for r in generated if r["fields"]["text"] == UNSURE]  # kept or over its label's target: it was parsed
    assert len(unsure) == 1 and unsure[0]["meta"]["weight"] == pytest.approx(2 / 3, abs=1e-4)
    assert all(r["meta"]["weight"] == 1.0 for r in generated if r["fields"]["text"] != UNSURE)


def test_annotate_and_generate_mix_by_share(loopback, tmp_path, canary_key) -> None:
    def both(body: dict, n: int) -> Action:
        if "<text>" in body["messages"][-1]["content"]:
            return annotator(body, n)
        label = re.search(r'"label": "([^"]+)"', body["messages"][-1]["content"]).group(1)
        return Action(text=json.dumps({"label": label, "text": f"A new {label} text, seed {body['seed']}."}))

    server = loopback(script=both)
    path = annotating(server, tmp_path, annotate={"votes": 1, "generated_share": 0.5})
    run = tmp_path / "run"
    assert main(["build", str(path), "--out", str(run), "--no-progress"]) == 0
    rows = pd.read_parquet(next((run / "dataset").rglob("*.parquet")))
    assert set(rows["origin"]) == {"annotate", "generated"}


def test_annotate_is_a_mode_of_classification_only_with_sources(tmp_path) -> None:
    recipe = classification_recipe("http://127.0.0.1:9", grounding={"mode": "annotate"})
    path = write_recipe(tmp_path / "recipe.yaml", recipe)
    with pytest.raises(Exception, match="grounding.mode needs documents"):
        load_recipe(path)


def test_a_weight_stage_weighs_rows_and_factory_eval_scores_with_the_same_weights(loopback, tmp_path, canary_key) -> None:
    server = loopback(script=annotator)
    real = tmp_path / "real.csv"
    pd.DataFrame({"text": [f"I love my {t}, it is great." for t in LIKED] + [f"My {t} is awful and broke." for t in DISLIKED],
                  "label": ["positive"] * 6 + ["negative"] * 6}).to_csv(real, index=False)
    path = annotating(server, tmp_path, annotate={"votes": 3, "min_agreement": 0.3},
                      filters=[{"type": "exact_dedup"}, {"type": "weight", "sources": ["agreement", "learned"]}],
                      real_data={"path": str(real), "train_per_label": 2},
                      eval={"evaluators": ["linear"], "seeds": [0], "ablation": True})
    run = tmp_path / "run"
    assert main(["build", str(path), "--out", str(run), "--no-progress"]) == 0
    rows = pd.read_parquet(next((run / "dataset").rglob("*.parquet")))
    assert rows["weight"].between(0, 1).all() and rows["weight"].max() == 1.0 and rows["weight"].min() < 1.0
    weights = json.loads((run / "stage_weights.json").read_text())
    assert weights["final"] == dict(zip(rows["id"], rows["weight"]))
    manifest = load_manifest(run)
    stage = next(s for s in manifest.funnel if s.stage == "weight")
    assert set(stage.stats["weights"]) == {"positive", "negative"}
    assert sum(w["rows"] for w in manifest.weights.values()) == len(rows) and all(
        isinstance(w["rows"], int) for w in manifest.weights.values()), "row counts stay whole numbers"
    built = manifest.eval["evaluators"]["linear"]
    assert main(["eval", str(run)]) == 0
    assert load_manifest(run).eval["evaluators"]["linear"]["synthetic"] == built["synthetic"], "the same weights, the same scores"
    card = (run / "README.md").read_text()
    assert "Row weights" in card


def test_an_auto_stage_is_judged_on_the_real_training_rows_and_switched_off_when_it_hurts(loopback, tmp_path, canary_key) -> None:
    """Each auto stage is judged on the real training rows; a confidence stage that leaves no row is switched off, and
    the card says which way each went and on what evidence."""
    server = loopback(script=annotator)
    real = tmp_path / "real.csv"
    pd.DataFrame({"text": [f"I love my {t}, it is great." for t in LIKED] + [f"My {t} is awful and broke." for t in DISLIKED],
                  "label": ["positive"] * 6 + ["negative"] * 6}).to_csv(real, index=False)
    stages = [{"type": "exact_dedup"}, {"type": "weight", "sources": ["agreement"], "auto": True},
              {"type": "confidence", "min_prob": 0.999, "auto": True}]
    path = annotating(server, tmp_path, annotate={"votes": 3, "min_agreement": 0.3}, filters=stages,
                      real_data={"path": str(real), "train_per_label": 3})
    run = tmp_path / "run"
    assert main(["build", str(path), "--out", str(run), "--no-progress", "--max-requests", "40"]) in (0, 3)
    manifest = load_manifest(run)
    choices = {s.stage: s.stats["auto"] for s in manifest.funnel if s.stats and "auto" in s.stats}
    assert set(choices) == {"weight", "confidence"}
    weight = choices["weight"]
    assert weight["scored_on"] == 6 and weight["on"] == (weight["change"]["gain"] >= 0)
    assert weight["with"] - weight["without"] == pytest.approx(weight["change"]["gain"], abs=1e-3)
    assert choices["confidence"] == {"on": False, "evidence": "the stage left no rows", "scored_on": 6}
    confidence = next(s for s in manifest.funnel if s.stage == "confidence")
    assert confidence.kept == confidence.rows_in and not confidence.dropped, "switched off: every row passes"
    card = (run / "README.md").read_text()
    assert "## Stages chosen for this run" in card and "| confidence | off | the stage left no rows |" in card
