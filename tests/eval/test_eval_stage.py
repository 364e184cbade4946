"""The eval stage through `factory build` and `factory eval`: conditions, ablation, gate."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pandas as pd
import yaml
from conftest import classification_recipe, real_rows, review, scripted, write_recipe
from loopback_openai import Action

from factory.cli import main
from factory.eval.metrics import verdict


def recipe(tmp_path: Path, server, gate: dict) -> Path:
    data = classification_recipe(server.base_url, generate={"per_label": 12})
    data["real_data"] = {"path": real_rows(tmp_path), "train_per_label": 4}
    data["filters"] = [{"type": "exact_dedup"}, {"type": "near_dedup", "threshold": 0.9}]
    data["eval"] = {"evaluators": ["linear"], "seeds": [0, 1], "bootstrap": 200, "gate": gate}
    return write_recipe(tmp_path / "r.yaml", data)


def test_build_scores_conditions_and_ablation_and_eval_rescores(tmp_path: Path, loopback, canary_key: str, capsys) -> None:
    server = loopback(script=scripted)
    out = tmp_path / "run"
    assert main(["build", str(recipe(tmp_path, server, {"min_macro_f1": 0.5})), "--out", str(out), "--no-progress"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    ev = manifest["eval"]
    assert manifest["passing"] is True and ev["gate"]["passed"] is True
    assert ev["validation_rows"] == 72 and ev["real_train_rows"] == 8 and ev["synthetic_rows"] == 24
    linear = ev["evaluators"]["linear"]
    for condition in ("real", "synthetic", "synthetic+real"):
        assert len(linear[condition]["runs"]) == 2
        assert set(linear[condition]["per_label_f1"]) == {"positive", "negative"}
    assert linear["synthetic+real"]["macro_f1"]["mean"] > 0.9  # separable data
    gain = linear["gain"]
    assert gain["ci_low"] <= gain["gain"] <= gain["ci_high"]
    assert [a["stage"] for a in ev["ablation"]] == ["parse", "exact_dedup", "near_dedup", "final"]
    assert all(a["synthetic+real"] is not None for a in ev["ablation"])
    assert "macro-F1" in capsys.readouterr().out
    card = (out / "README.md").read_text()
    verdicts = re.findall(r"^\| (exact_dedup|near_dedup|final) \|.*\| (yes|no: it lowered the score|within noise) \|$", card, re.MULTILINE)
    assert [stage for stage, _ in verdicts] == ["exact_dedup", "near_dedup", "final"], "the card says which stages earned their place"

    # Re-scoring the finished run gives the same numbers without any request.
    sent = len(server.log)
    assert main(["eval", str(out)]) == 0
    again = json.loads((out / "manifest.json").read_text())["eval"]
    assert again["evaluators"]["linear"]["synthetic+real"]["macro_f1"] == linear["synthetic+real"]["macro_f1"]
    assert len(server.log) == sent


def test_failing_gate_writes_everything_and_exits_non_zero(tmp_path: Path, loopback, canary_key: str, capsys) -> None:
    server = loopback(script=scripted)
    out = tmp_path / "run"
    code = main(["build", str(recipe(tmp_path, server, {"min_gain": 0.99})), "--out", str(out), "--no-progress"])
    assert code == 4
    assert "gate failed" in capsys.readouterr().err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["passing"] is False
    assert manifest["eval"]["gate"]["checks"][0]["passed"] is False
    assert len(pd.read_parquet(out / "dataset" / "data" / "train.parquet")) == 24
    assert main(["eval", str(out), "--evaluators", "nope"]) == 1


def test_eval_of_a_run_without_real_data_fails_clearly(tmp_path: Path, loopback, canary_key: str, capsys) -> None:
    server = loopback()
    out = tmp_path / "run"
    assert main(["build", str(write_recipe(tmp_path / "r.yaml", classification_recipe(server.base_url))),
                 "--out", str(out), "--no-progress"]) == 0
    assert main(["eval", str(out)]) == 1
    assert "no real_data" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "nothing")]) == 1


def test_pinned_real_data_seed_scores_every_build_on_the_same_validation_sample(tmp_path: Path, loopback, canary_key: str) -> None:
    """`factory build --seed S` with `real_data.seed` pinned: same split *and* same `max_validation` sample."""
    server = loopback(script=scripted)
    path = recipe(tmp_path, server, {"min_macro_f1": 0.0})
    data = yaml.safe_load(path.read_text())
    data["eval"]["max_validation"] = 30  # of the 72 validation rows: the sample is seeded too

    def sample(seed: int, pinned: int | None) -> str:
        data["real_data"]["seed"] = pinned
        out = tmp_path / f"run-{seed}-{pinned}"
        assert main(["build", str(write_recipe(tmp_path / "r.yaml", data)), "--out", str(out), "--seed", str(seed), "--no-progress"]) == 0
        ev = json.loads((out / "manifest.json").read_text())["eval"]
        assert ev["validation_rows"] == 30
        return ev["validation_sample"]

    assert sample(1, 5) == sample(2, 5), "a pinned seed scores every build on the same rows"
    assert sample(2, None) != sample(2, 5), "unpinned, the recipe seed picks the rows"


def test_each_stage_is_judged_by_a_paired_interval_over_validation_rows_and_real_draws(tmp_path: Path, loopback,
                                                                                        canary_key: str) -> None:
    server = loopback(script=scripted)
    out = tmp_path / "run"
    assert main(["build", str(recipe(tmp_path, server, {"min_macro_f1": 0.5})), "--out", str(out), "--no-progress"]) == 0
    ev = json.loads((out / "manifest.json").read_text())["eval"]
    assert ev["ablation_draws"] is True, "4 real rows per label: each seed trains on its own draw of them"
    for entry in ev["ablation"][1:]:
        change = entry["change"]
        assert change["ci_low"] <= entry["delta"] <= change["ci_high"] and entry["verdict"] == verdict(change)
        if entry["rows"] == ev["ablation"][ev["ablation"].index(entry) - 1]["rows"]:  # nothing dropped: no change at all
            assert (change["ci_low"], change["ci_high"], entry["verdict"]) == (0.0, 0.0, "within noise")


def flipped(body: dict, n: int) -> Action:
    """Replies whose text reads as the other label: rows that teach a classifier the wrong thing."""
    label = re.search(r'"label": "([^"]+)"', body["messages"][-1]["content"]).group(1)
    other = "negative" if label == "positive" else "positive"
    return Action(text=json.dumps({"label": label, "text": review(other, random.Random(body["seed"]))}))


def test_rows_that_hurt_are_said_first_in_the_terminal_the_card_and_the_report(tmp_path: Path, loopback,
                                                                              canary_key: str, capsys) -> None:
    server = loopback(script=flipped)
    out = tmp_path / "run"
    assert main(["build", str(recipe(tmp_path, server, {"min_macro_f1": 0.0})), "--out", str(out), "--no-progress"]) == 0
    ev = json.loads((out / "manifest.json").read_text())["eval"]
    gain = ev["evaluators"]["linear"]["gain"]
    assert gain["ci_high"] < 0 and "made the classifier WORSE" in ev["warning"] and "grounding.mode" in ev["warning"]
    printed = capsys.readouterr()
    assert "\nWARNING: These rows made the classifier WORSE" in printed.err  # before the build's report on stdout
    card = (out / "README.md").read_text()
    body = card.split("---", 2)[2]
    assert body.lstrip().split("\n", 2)[2].startswith("> **Warning.** These rows made the classifier WORSE")
    assert "<strong>Warning.</strong> These rows made the classifier WORSE" in (out / "report.html").read_text()


def test_no_warning_when_the_rows_help(tmp_path: Path, loopback, canary_key: str, capsys) -> None:
    server = loopback(script=scripted)
    out = tmp_path / "run"
    assert main(["build", str(recipe(tmp_path, server, {"min_macro_f1": 0.0})), "--out", str(out), "--no-progress"]) == 0
    assert json.loads((out / "manifest.json").read_text())["eval"]["warning"] is None
    assert "WARNING" not in capsys.readouterr().err and "Warning." not in (out / "README.md").read_text()
