"""A person's decisions (run/decisions.py) and how the build honours them: a rejection is never overridden
by a filter, an acceptance never dropped by one, a relabel replaces the label, and the quota counts after."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pandas as pd
import pytest
from conftest import classification_recipe, write_recipe
from loopback_openai import Action, default_text

from factory import build, load_recipe
from factory.run.decisions import ACCEPT, REJECT, RELABEL, Decision, append, decisions, verdicts


def test_the_latest_decision_wins_and_a_relabel_keeps_the_row(tmp_path: Path) -> None:
    append(tmp_path, [Decision("a", REJECT, note="off topic"), Decision("b", RELABEL, label="negative"),
                      Decision("c", ACCEPT)])
    append(tmp_path, [Decision("a", ACCEPT, who="ann"), Decision("e", RELABEL, label="x"), Decision("e", REJECT)])
    state = verdicts(tmp_path)
    assert not state["e"].keep and state["e"].label is None  # rejected, not also counted as relabelled
    assert state["a"].keep and state["a"].note == "off topic" and state["a"].decisions == 2
    assert state["b"].keep and state["b"].label == "negative"
    assert state["c"].keep and state["c"].label is None
    assert all(d.at for d in decisions(tmp_path))
    with pytest.raises(ValueError):
        Decision("d", "maybe")
    with pytest.raises(ValueError):
        Decision("d", RELABEL)


def _writer(run_dir: str, start: int) -> None:
    for i in range(start, start + 200):
        append(Path(run_dir), [Decision(f"row-{i}", REJECT, note="x" * 2000)])


def test_two_writers_never_interleave_a_line(tmp_path: Path) -> None:
    procs = [multiprocessing.Process(target=_writer, args=(str(tmp_path), k * 1000)) for k in range(2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    lines = (tmp_path / "decisions.jsonl").read_text().splitlines()
    assert len(lines) == 400 and len({json.loads(line)["id"] for line in lines}) == 400


def test_the_build_honours_the_decisions(tmp_path: Path, loopback, canary_key: str) -> None:
    def script(body: dict, n: int) -> Action:
        text = default_text(body)
        if body.get("seed", 0) % 4 == 0:  # some replies say the same thing: exact_dedup drops them
            reply = json.loads(text)
            text = json.dumps({**reply, "text": f"The same words for {reply['label']}."})
        return Action(text=text)

    server = loopback(script=script)
    recipe = classification_recipe(server.base_url, generate={"per_label": 5}, filters=[{"type": "exact_dedup"}])
    path = write_recipe(tmp_path / "r.yaml", recipe)
    run = tmp_path / "run"
    build(load_recipe(path), run, progress=False)
    table = pd.read_parquet(run / "dataset" / "data" / "train.parquet")
    dropped = [json.loads(line) for line in (run / "rejected.jsonl").read_text().splitlines()]
    duplicate = next(d for d in dropped if d["reason"] == "exact_duplicate")
    positive = table[table["label"] == "positive"]["id"].tolist()
    negative = table[table["label"] == "negative"]["id"].tolist()
    append(run, [Decision(positive[0], REJECT, note="too generic"), Decision(negative[0], REJECT),
                 Decision(positive[1], RELABEL, label="negative"), Decision(duplicate["id"], ACCEPT)])
    sent = len(server.log)

    result = build(load_recipe(path), run, progress=False)
    again = pd.read_parquet(run / "dataset" / "data" / "train.parquet")
    ids = set(again["id"])
    assert positive[0] not in ids and negative[0] not in ids  # rejected, whatever the filters say
    assert again.set_index("id").loc[positive[1], "label"] == "negative"  # relabelled
    assert duplicate["id"] in ids  # accepted, though exact_dedup drops it
    assert again["label"].value_counts().to_dict() == {"positive": 5, "negative": 5}  # topped up after the decisions
    assert len(server.log) > sent  # the top-up round asked for new rows...
    assert len({e.fingerprint for e in server.log}) == len(server.log)  # ...and re-sent none
    m = result.manifest
    review = next(s for s in m.funnel if s.stage == "review")
    assert review.dropped == {"rejected_by_reviewer": 2} and review.stats["restored"] == 1
    assert m.review == {"decisions": 4, "reviewed": 4, "accepted": 1, "rejected": 2, "relabelled": 1}
    rejected = [json.loads(line) for line in (run / "rejected.jsonl").read_text().splitlines()]
    assert {(r["id"], r["reason"]) for r in rejected if r["stage"] == "review"} == {
        (positive[0], "rejected_by_reviewer"), (negative[0], "rejected_by_reviewer")}
    assert "A person reviewed 4 of the generated rows" in (run / "README.md").read_text()
    assert "review" in json.loads((run / "stages.json").read_text())


def test_a_card_without_decisions_claims_no_review(tmp_path: Path, loopback, canary_key: str) -> None:
    server = loopback()
    result = build(load_recipe(write_recipe(tmp_path / "r.yaml", classification_recipe(server.base_url))),
                   tmp_path / "run", progress=False)
    assert result.manifest.review is None
    assert "Human review" not in (tmp_path / "run" / "README.md").read_text()


def test_eval_scores_the_run_with_and_without_the_decisions(tmp_path: Path, loopback, canary_key: str, capsys) -> None:
    from conftest import real_rows, scripted

    from factory.cli import main

    server = loopback(script=scripted)
    data = classification_recipe(server.base_url, generate={"per_label": 12})
    data["real_data"] = {"path": real_rows(tmp_path), "train_per_label": 4}
    data["filters"] = [{"type": "exact_dedup"}]
    data["eval"] = {"evaluators": ["linear"], "seeds": [0, 1], "bootstrap": 200}
    path = write_recipe(tmp_path / "r.yaml", data)
    run = tmp_path / "run"
    assert main(["build", str(path), "--out", str(run), "--no-progress"]) == 0
    table = pd.read_parquet(run / "dataset" / "data" / "train.parquet")
    # A person flips four rows' labels (a careless reviewer): the ablation must show what that did.
    flip = {"positive": "negative", "negative": "positive"}
    append(run, [Decision(i, RELABEL, label=flip[label]) for i, label in zip(table["id"][:4], table["label"][:4])])
    sent = len(server.log)
    assert main(["eval", str(run)]) == 0  # applies them from the cached replies, then scores
    assert "applying 4 review decision(s)" in capsys.readouterr().err
    assert len(server.log) == sent
    ablation = json.loads((run / "manifest.json").read_text())["eval"]["ablation"]
    assert [a["stage"] for a in ablation] == ["parse", "exact_dedup", "review", "final"]
    review = next(a for a in ablation if a["stage"] == "review")
    assert review["synthetic+real"] is not None and "change" in review


def test_rows_a_person_kept_teach_the_confidence_filter_and_the_critic(tmp_path: Path, loopback, canary_key: str) -> None:
    from conftest import real_rows, scripted

    server = loopback(script=scripted)
    data = classification_recipe(server.base_url, generate={"per_label": 8})
    data["real_data"] = {"path": real_rows(tmp_path), "train_per_label": 4}
    data["filters"] = [{"type": "confidence", "min_prob": 0.01}, {"type": "critic", "drop_fraction": 0.1}]
    path = write_recipe(tmp_path / "r.yaml", data)
    run = tmp_path / "run"
    first = build(load_recipe(path), run, progress=False)
    assert not any("reviewed_rows" in (s.stats or {}) for s in first.manifest.funnel)
    table = pd.read_parquet(run / "dataset" / "data" / "train.parquet")
    append(run, [Decision(i, ACCEPT) for i in table["id"][:4]])
    again = build(load_recipe(path), run, progress=False)
    confidence = next(s for s in again.manifest.funnel if s.stage == "confidence")
    assert confidence.stats["reviewed_rows"] == 4 and confidence.stats["train_rows"] > 8
    critic = next(s for s in again.manifest.funnel if s.stage == "critic")
    assert critic.stats["reviewed_rows"] == 4 and critic.stats["real_rows"] == 8
    card = (run / "README.md").read_text()
    assert "confidence learned from 4 of them as from the real rows" in card and "critic learned from 4 of them" in card


def test_export_applies_new_decisions_from_the_cache_and_a_build_tops_up(tmp_path: Path, loopback, canary_key: str,
                                                                        capsys) -> None:
    from factory.cli import main

    server = loopback()
    path = write_recipe(tmp_path / "r.yaml", classification_recipe(server.base_url))
    run = tmp_path / "run"
    assert main(["build", str(path), "--out", str(run), "--no-progress"]) == 0
    table = pd.read_parquet(run / "dataset" / "data" / "train.parquet")
    gone = table[table["label"] == "positive"]["id"].tolist()[:3]
    append(run, [Decision(i, REJECT, note="not a review") for i in gone])
    sent = len(server.log)
    capsys.readouterr()

    assert main(["export", str(run), "--format", "columns"]) == 0
    err = capsys.readouterr().err
    assert len(server.log) == sent  # applied from the cached replies: nothing sent
    assert "applying 3 review decision(s)" in err and "warning:" in err
    manifest = json.loads((run / "manifest.json").read_text())
    # Three rejections leave "positive" short: the export says so, and publishes what the person decided.
    assert manifest["status"] == "offline" and "run `factory build`" in manifest["stopped"]
    assert manifest["progress"]["positive"]["kept"] < 5
    assert not set(gone) & set(pd.read_parquet(run / "dataset" / "data" / "train.parquet")["id"])
    exported = [json.loads(line)["text"] for line in (run / "export" / "columns" / "train.jsonl").read_text().splitlines()]
    assert not set(table.set_index("id").loc[gone, "text"]) & set(exported)
    assert not (run / "partial").exists()

    # The next build sends what the rejections left short, and nothing twice.
    assert main(["build", str(path), "--out", str(run), "--no-progress"]) == 0
    assert len(server.log) > sent and len({e.fingerprint for e in server.log}) == len(server.log)
    again = pd.read_parquet(run / "dataset" / "data" / "train.parquet")
    assert again["label"].value_counts().to_dict() == {"positive": 5, "negative": 5} and not set(gone) & set(again["id"])
