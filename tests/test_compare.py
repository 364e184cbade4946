"""`factory compare`: a real packaged model against a scripted server, on the same prompts."""

from __future__ import annotations

import json
import random
import re
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import classification_recipe, write_recipe
from loopback_openai import Action

from factory.cli import main
from factory.comparison import (
    clusters_holding,
    cross_label_collisions,
    distinct_n,
    mean_pairwise_distance,
    verdict,
)
from factory.records import Record

REQUESTS = 4  # per label, for every generator
REFUSAL = "I'm sorry, but I can't assist with that."
# What the scripted generator answers to the k-th request of each label (k = 0..3).
SCRIPT = {
    "positive": [
        REFUSAL,
        "I love this kettle, it boils water in a minute and pours without a single drip.",
        "i LOVE this kettle -- it boils water in a minute and pours without a single drip!!",  # exact duplicate
        "Wonderful desk lamp: warm light, sturdy base, and the dimmer is smooth and quiet.",
    ],
    "negative": [
        REFUSAL,
        None,  # bad JSON
        "Terrible chair, the seat cracked within a week and the legs wobble constantly.",
        "Terrible chair, the seat cracked within a week and the legs wobble constantly. Really.",  # near duplicate
    ],
}
# Replies go to requests in arrival order, so which of each duplicate pair comes first (and is kept)
# varies between runs: any of these four sets is right.
KEPT_CHOICES = [[first, SCRIPT["positive"][3], second]
                for first in SCRIPT["positive"][1:3] for second in SCRIPT["negative"][2:4]]
PRICE_IN, PRICE_OUT = 500.0, 1500.0  # USD per million tokens


class Scripted:
    """Answers the k-th request of each label with SCRIPT[label][k], whatever order requests arrive in."""

    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()
        self.replies: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, body: dict, n: int) -> Action:
        label = re.search(r'"label": "([^"]+)"', body["messages"][-1]["content"]).group(1)
        with self._lock:
            k = self.seen[label]
            self.seen[label] += 1
        text = SCRIPT[label][k]
        if text is None:
            reply = f'{{"label": "{label}", "text": "unterminated'
        elif text == REFUSAL:
            reply = text
        else:
            reply = json.dumps({"label": label, "text": text})
        with self._lock:
            self.replies.append(reply)
        return Action(text=reply)


def real_csv(tmp_path: Path) -> str:
    rng = random.Random(0)
    good = ["love", "adore", "recommend", "enjoy"]
    bad = ["hate", "regret", "return", "avoid"]
    things = ["kettle", "lamp", "chair", "blender", "toaster", "desk"]
    rows = []
    for label, verbs, tail in (("positive", good, "works perfectly"), ("negative", bad, "broke quickly")):
        for _ in range(40):
            rows.append((f"I {rng.choice(verbs)} this {rng.choice(things)}, it {tail} after {rng.randint(2, 60)} days.", label))
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(tmp_path / "real.csv", index=False)
    return "real.csv"


def compare_recipe(tmp_path: Path, base_url: str) -> Path:
    data = classification_recipe(base_url, generate={"per_label": REQUESTS, "few_shot": 1})
    data["generators"] = [
        # One thread: llama.cpp's threads spin-wait, and on a busy 2-core machine two of them run 10x+ slower.
        {"name": "smol", "backend": "llamacpp", "model": "smollm2-135m-instruct", "max_tokens": 64, "temperature": 0.7,
         "n_threads": 1},
        {**data["generators"][0], "price": {"input": PRICE_IN, "output": PRICE_OUT}},
    ]
    data["real_data"] = {"path": real_csv(tmp_path), "train_per_label": 4}
    data["filters"] = [{"type": "exact_dedup"}, {"type": "quality"}, {"type": "near_dedup"}]
    data["eval"] = {"evaluators": ["linear"], "seeds": [0, 1], "bootstrap": 200}
    return write_recipe(tmp_path / "r.yaml", data)


@pytest.mark.slow
def test_compare_a_packaged_model_with_a_scripted_server(tmp_path: Path, loopback, canary_key: str, capsys) -> None:
    script = Scripted()
    server = loopback(script=script)
    out = tmp_path / "cmp"
    code = main(["compare", str(compare_recipe(tmp_path, server.base_url)), "--requests-per-label", str(REQUESTS),
                 "--out", str(out), "--pair", "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0

    data = json.loads((out / "compare.json").read_text())
    assert data["generators"] == ["smol", "loop"] and data["requests_per_label"] == REQUESTS
    for name in ("smol", "loop"):
        m = data["metrics"][name]
        assert (out / name / "manifest.json").exists() and (out / name / "dataset").is_dir()  # a run of its own
        assert m["requests"] == 2 * REQUESTS
        assert set(m["duplicates"]) >= {"exact_rate", "near_rate"}
        assert set(m["failures"]) >= {"refusal_rate", "parse_failure_rate", "request_failure_rate", "copy_rate"}
        assert set(m["diversity"]) >= {"distinct_1", "distinct_2", "mean_distance", "clusters_90"}
        assert set(m["fidelity"]) == {"kept", "parsed"}
        assert set(m["usage"]) >= {"prompt_tokens", "completion_tokens", "tokens", "tokens_per_kept_row", "request_s",
                                   "wall_s", "cost", "score_per_1k_tokens", "kept_per_1k_tokens"}
        for value in (m["duplicates"]["exact_rate"], m["duplicates"]["near_rate"], m["failures"]["refusal_rate"],
                      m["failures"]["parse_failure_rate"], m["acceptance"]["overall"]):
            assert 0 <= value <= 1
        assert [s["stage"] for s in m["acceptance"]["stages"]] == ["parse", "exact_dedup", "quality", "near_dedup", "target"]
        assert m["eval"]["evaluator"] == "linear"
        for condition in ("real", "synthetic+real"):
            assert set(m["eval"][condition]) == {"mean", "std"}
        assert m["usage"]["tokens"] > 0 and m["usage"]["request_s"] > 0
        assert m["usage"]["score_per_1k_tokens"] is not None
        if m["kept"]:
            assert m["diversity"]["distinct_1"] is not None and m["diversity"]["clusters_90"] >= 1
            assert 0 <= m["fidelity"]["kept"] <= 1 and 0 <= m["fidelity"]["parsed"] <= 1
        if m["kept"] >= 2:
            assert 0 <= m["diversity"]["mean_distance"] <= 2
    assert data["metrics"]["smol"]["usage"]["cost"] == 0.0  # a local model costs no money
    assert data["clusters"]["k"] >= 1

    # The scripted generator's numbers are known exactly.
    loop = data["metrics"]["loop"]
    assert (loop["parsed"], loop["kept"]) == (5, 3)
    assert loop["failures"]["refusal_rate"] == 2 / 8
    assert loop["failures"]["parse_failure_rate"] == 1 / 8
    assert loop["failures"]["reasons"] == {"bad_json": 1, "refusal": 2}
    assert loop["failures"]["copy_rate"] == 0 and loop["failures"]["request_failure_rate"] == 0
    assert (loop["duplicates"]["exact"], loop["duplicates"]["near"]) == (1, 1)
    assert loop["duplicates"]["exact_rate"] == 1 / 5 and loop["duplicates"]["near_rate"] == 1 / 5
    assert [(s["in"], s["kept"]) for s in loop["acceptance"]["stages"]] == [(8, 5), (5, 4), (4, 4), (4, 3), (3, 3)]
    assert loop["acceptance"]["overall"] == 3 / 8
    assert any(loop["diversity"]["distinct_1"] == pytest.approx(distinct_n(kept, 1))
               and loop["diversity"]["distinct_2"] == pytest.approx(distinct_n(kept, 2)) for kept in KEPT_CHOICES)
    completion_tokens = sum(max(1, len(r.split())) for r in script.replies)
    assert loop["usage"]["prompt_tokens"] == 50 * 8 and loop["usage"]["completion_tokens"] == completion_tokens
    assert loop["usage"]["tokens_per_kept_row"] == pytest.approx((400 + completion_tokens) / 3)
    assert loop["usage"]["cost"] == pytest.approx((400 * PRICE_IN + completion_tokens * PRICE_OUT) / 1e6)
    assert loop["usage"]["cost_per_kept_row"] == pytest.approx(loop["usage"]["cost"] / 3)
    assert loop["eval"]["synthetic"]["mean"] is not None

    # The verdict ranks synthetic+real per 1k tokens and tests the lead against the seed spread.
    v = data["verdict"]
    assert v["basis"] == "synthetic+real macro-F1 per 1k tokens" and {v["best"], v["runner_up"]} == {"smol", "loop"}
    assert isinstance(v["outside_spread"], bool)
    assert v["text"].startswith(f"verdict: {v['best']} has the best synthetic+real macro-F1 per 1k tokens")
    assert ("outside the seed spread" in v["text"]) == v["outside_spread"]

    # --pair: every prompt's rows side by side, and the cross-label collision rate per generator pair.
    pairs = data["pairs"]
    assert pairs["prompts"] == 2 * REQUESTS
    for entry in pairs["examples"]:
        assert set(entry["rows"]) == {"smol", "loop"} and entry["label"] in ("positive", "negative")
        assert set(entry["axes"]) == {"product", "length"}
    refused = [e for e in pairs["examples"] if e["rows"]["loop"].get("rejected") == "refusal"]
    assert len(refused) == 2 and all(e["rows"]["loop"]["text"] == REFUSAL for e in refused)
    [collision] = pairs["collisions"]
    assert (collision["a"], collision["b"]) == ("smol", "loop") and 0 <= collision["rate"] <= 1
    assert collision["rows"] == data["metrics"]["smol"]["parsed"] + 5

    page = (out / "compare.html").read_text()
    assert "smol" in page and "loop" in page and page.count("data:image/png;base64,") >= 4
    assert "Same prompt, side by side" in page and REFUSAL.replace("'", "&#x27;") in page
    assert v["text"].split(":")[0] in page

    assert "exact-duplicate rate (parsed)" in printed and "refusal rate (requests)" in printed
    assert re.search(r"^metric\s+smol\s+loop", printed, re.MULTILINE)
    assert "smol vs loop:" in printed
    assert printed.strip().splitlines()[-2].startswith("verdict: ")


def test_unknown_generator_fails_before_any_request(tmp_path: Path, loopback, canary_key: str, capsys) -> None:
    server = loopback()
    recipe = write_recipe(tmp_path / "r.yaml", classification_recipe(server.base_url))
    assert main(["compare", str(recipe), "--generators", "loop,nope", "--out", str(tmp_path / "c"), "--no-progress"]) == 1
    assert "no generator named 'nope'" in capsys.readouterr().err
    assert server.log == []


def test_compare_without_eval_falls_back_to_kept_rows_per_1k_tokens(tmp_path: Path, loopback, canary_key: str, capsys) -> None:
    server = loopback()
    recipe = classification_recipe(server.base_url)
    recipe["generators"].append({**recipe["generators"][0], "name": "cold", "temperature": 0.2})
    out = tmp_path / "c"
    assert main(["compare", str(write_recipe(tmp_path / "r.yaml", recipe)), "--out", str(out), "--no-progress"]) == 0
    data = json.loads((out / "compare.json").read_text())
    assert data["requests_per_label"] == 6  # ceil(1.05 x per_label 5)
    assert all(m["eval"] is None and m["fidelity"] == {"kept": None, "parsed": None} for m in data["metrics"].values())
    assert data["verdict"]["basis"] == "kept rows per 1k tokens"
    assert "needs an eval section" in capsys.readouterr().out
    # The same prompts went to both generators.
    sent = {name: sorted(json.dumps(r.body["messages"]) for r in server.log if r.body["temperature"] == t)
            for name, t in (("loop", 0.9), ("cold", 0.2))}
    assert sent["loop"] == sent["cold"] and len(sent["loop"]) == 12


@pytest.mark.parametrize("name", ["generated.jsonl", "rejected.jsonl"])
def test_compare_goes_on_after_a_crash_tore_a_run_log(tmp_path: Path, loopback, canary_key: str, name: str) -> None:
    server = loopback()
    recipe = classification_recipe(server.base_url)
    recipe["generators"][0]["max_attempts"] = 1
    path, out = write_recipe(tmp_path / "r.yaml", recipe), tmp_path / "c"
    assert main(["compare", str(path), "--out", str(out), "--no-progress"]) == 0
    before = json.loads((out / "compare.json").read_text())["metrics"]["loop"]
    with (out / "loop" / name).open("a", encoding="utf-8") as handle:
        handle.write('{"id": "torn", "te')  # a kill -9 in the middle of a write
    sent = len(server.log)
    assert main(["compare", str(path), "--out", str(out), "--no-progress"]) == 0
    after = json.loads((out / "compare.json").read_text())["metrics"]["loop"]
    assert len(server.log) == sent  # resumed from the cache
    assert (after["kept"], after["parsed"]) == (before["kept"], before["parsed"])
    assert all(json.loads(line) for line in (out / "loop" / name).read_text().splitlines())


def test_mean_pairwise_distance_is_exact() -> None:
    rng = np.random.default_rng(0)
    v = rng.normal(size=(50, 8))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    cos = v @ v.T
    brute = 1 - (cos.sum() - np.trace(cos)) / (50 * 49)
    assert mean_pairwise_distance(v) == pytest.approx(brute)
    assert mean_pairwise_distance(v[:1]) is None


def test_clusters_holding_ninety_percent() -> None:
    assert clusters_holding(np.array([0] * 5 + [1] * 3 + [2] * 2)) == 3
    assert clusters_holding(np.array([0] * 9 + [1])) == 1
    assert clusters_holding(np.array([0] * 8 + [1] + [2])) == 2


def test_cross_label_collisions() -> None:
    a = [Record({"text": "Great kettle!"}, "positive"), Record({"text": "Bad lamp."}, "negative"),
         Record({"text": "Fine chair"}, "positive")]
    b = [Record({"text": "great KETTLE"}, "negative"), Record({"text": "bad lamp"}, "negative"), Record({"text": "Other"}, "positive")]
    va = np.eye(4)[[0, 1, 2]]
    vb = np.eye(4)[[3, 1, 2]]  # "Other" embeds like "Fine chair" (cosine 1) but has the same label
    found = cross_label_collisions(a, b, va, vb)
    # Only the kettle pair: same normalised text, different labels (the lamp pair shares its label).
    assert found["colliding"] == 2 and found["rate"] == 2 / 6
    vb_close = np.eye(4)[[3, 0, 2]]  # now "bad lamp" (negative) embeds like "Great kettle!" (positive)
    assert cross_label_collisions(a, b, va, vb_close)["colliding"] == 3


def _metrics(score: float, std: float, tokens: int, kept: int = 10) -> dict:
    return {"kept": kept, "eval": {"synthetic+real": {"mean": score, "std": std}},
            "usage": {"tokens": tokens, "score_per_1k_tokens": score / (tokens / 1000),
                      "kept_per_1k_tokens": kept / (tokens / 1000)}}


def test_verdict_ranks_score_per_1k_tokens_and_checks_the_spread() -> None:
    result = verdict({"a": _metrics(0.80, 0.01, 2000), "b": _metrics(0.70, 0.02, 1000)}, has_eval=True)
    assert (result["best"], result["runner_up"]) == ("b", "a")  # 0.70 per 1k beats 0.40 per 1k
    assert result["outside_spread"] is True and result["delta"] == pytest.approx(-0.10)
    close = verdict({"a": _metrics(0.71, 0.05, 1000), "b": _metrics(0.70, 0.05, 1000)}, has_eval=True)
    assert close["best"] == "a" and close["outside_spread"] is False and "within the seed spread" in close["text"]
    fallback = verdict({"a": _metrics(0, 0, 1000, kept=5), "b": _metrics(0, 0, 1000, kept=9)}, has_eval=False)
    assert fallback["best"] == "b" and "needs an eval section" in fallback["text"]


def test_export_of_a_compare_run_applies_decisions_with_compares_requests(tmp_path: Path, loopback, canary_key: str) -> None:
    from factory.run.decisions import REJECT, Decision, append

    server = loopback()
    recipe = classification_recipe(server.base_url)
    recipe["generators"].append({**recipe["generators"][0], "name": "cold", "temperature": 0.2})
    out = tmp_path / "c"
    assert main(["compare", str(write_recipe(tmp_path / "r.yaml", recipe)), "--out", str(out), "--no-progress"]) == 0
    run = out / "loop"
    before = json.loads((run / "manifest.json").read_text())
    assert before["fixed_requests"] == {"generator": "loop", "requests_per_bucket": 6}
    gone = pd.read_parquet(run / "dataset" / "data" / "train.parquet")["id"][0]
    append(run, [Decision(gone, REJECT)])
    sent = len(server.log)
    assert main(["export", str(run), "--format", "columns"]) == 0
    after = json.loads((run / "manifest.json").read_text())
    # The same fixed requests to the same one generator, all cached: nothing sent, nothing missing.
    assert len(server.log) == sent and after["status"] != "offline"
    assert [g["name"] for g in after["generators"]] == ["loop"] and after["budget"]["used"] == before["budget"]["used"]
    assert gone not in set(pd.read_parquet(run / "dataset" / "data" / "train.parquet")["id"])
