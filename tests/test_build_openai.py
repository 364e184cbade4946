"""`factory build` end to end against a real HTTP server on loopback that speaks the OpenAI API."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import datasets
import pandas as pd
import pytest
from conftest import CANARY_KEY, assert_resumes_after_sigkill, classification_recipe, write_recipe
from loopback_openai import Action, default_text

from factory import build, load_recipe
from factory.cli import main
from factory.embeddings import DEFAULT_EMBEDDING_MODEL, Embedder
from factory.errors import RunLockedError
from factory.run.store import RunStore


def test_build_writes_dataset_with_exact_targets(tmp_path: Path, loopback, canary_key: str) -> None:
    server = loopback()
    recipe = write_recipe(tmp_path / "r.yaml", classification_recipe(server.base_url))
    out = tmp_path / "run"

    assert main(["build", str(recipe), "--out", str(out), "--no-progress"]) == 0

    table = pd.read_parquet(out / "dataset" / "data" / "train.parquet")
    ds = datasets.load_from_disk(str(out / "dataset"))
    assert len(ds) == len(table) == 10
    assert table["label"].value_counts().to_dict() == {"positive": 5, "negative": 5}
    assert table["id"].is_unique
    assert set(table.columns) >= {"id", "text", "label", "generator", "model", "axis_product", "axis_length"}
    assert set(table["axis_product"]) <= {"kettle", "lamp", "chair"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["generators"][0]["models_reported"] == {"loopback-model-v1": manifest["generators"][0]["requests"]}
    assert manifest["generators"][0]["endpoint"] == f"127.0.0.1:{server.port}/v1"
    assert manifest["progress"]["positive"] | {"requests": 0} == {"target": 5, "kept": 5, "reached": True, "requests": 0}
    assert [s["stage"] for s in manifest["funnel"]] == ["parse", "exact_dedup", "target"]
    assert manifest["versions"]["python"]
    # Every request asked for JSON with the reply schema.
    assert all(r.body["response_format"]["type"] == "json_schema" for r in server.log)


def test_cached_rerun_sends_nothing(tmp_path: Path, loopback, canary_key: str) -> None:
    server = loopback()
    spec = load_recipe(write_recipe(tmp_path / "r.yaml", classification_recipe(server.base_url)))
    first = build(spec, tmp_path / "run", progress=False)
    sent = len(server.log)
    second = build(spec, tmp_path / "run", progress=False)
    assert len(server.log) == sent
    assert second.manifest.generators[0]["cached"] == second.manifest.generators[0]["requests"]
    ids = [json.loads(line)["id"] for line in (tmp_path / "run" / "generated.jsonl").read_text().splitlines()]
    assert len(ids) == len(set(ids)) == first.manifest.funnel[0].kept


def test_faults_are_bounded_and_become_rejected_rows(tmp_path: Path, loopback, canary_key: str) -> None:
    """429 with Retry-After, 500, a hang past the timeout, a malformed body, refusals and bad JSON."""
    retry_after_seen: list[float] = []

    kinds: dict[str, int] = {}  # each distinct request gets the next fault in turn: every fault occurs

    def script(body: dict, n: int) -> Action:
        kind = kinds.setdefault(json.dumps([body["messages"], body["seed"]]), len(kinds) % 7)
        if kind == 0 and n == 0:
            retry_after_seen.append(time.time())
            return Action(status=429, headers={"Retry-After": "0.2"})
        if kind == 1:
            return Action(status=500)  # always: gives up after max_attempts
        if kind == 2 and n == 0:
            return Action(delay=3.0, text=default_text(body))  # hangs past the 2 s timeout once
        if kind == 3:
            return Action(body=b'{"choices": [ this is not json')
        if kind == 4:
            return Action(text="I'm sorry, but I can't assist with that.")
        if kind == 5:
            return Action(text='{"label": "positive", "text": "unterminated')
        return Action(text=default_text(body))

    server = loopback(script=script)
    recipe = classification_recipe(server.base_url, generate={"per_label": 6, "max_requests": 60})
    spec = load_recipe(write_recipe(tmp_path / "r.yaml", recipe))
    result = build(spec, tmp_path / "run", progress=False)

    rejected = [json.loads(line) for line in (tmp_path / "run" / "rejected.jsonl").read_text().splitlines()]
    reasons = {r["reason"] for r in rejected}
    assert {"refusal", "bad_json", "request_failed"} <= reasons
    details = " ".join(r["detail"] for r in rejected if r["reason"] == "request_failed")
    assert "http_500" in details and "bad_response" in details
    # Attempts are bounded: no fingerprint was sent more than max_attempts (3) times.
    counts: dict[str, int] = {}
    for entry in server.log:
        counts[entry.fingerprint] = counts.get(entry.fingerprint, 0) + 1
    assert max(counts.values()) <= 3
    # The 429s were retried after Retry-After and then succeeded; the hang was retried too.
    assert retry_after_seen
    assert result.manifest.status == "complete"
    assert sum(result.manifest.progress[b].kept for b in ("positive", "negative")) == 12
    parse = result.manifest.funnel[0]
    assert parse.rows_in == parse.kept + sum(parse.dropped.values())


def test_retry_after_is_honoured(tmp_path: Path, loopback, canary_key: str) -> None:
    def script(body: dict, n: int) -> Action:
        return Action(status=429, headers={"Retry-After": "0.5"}) if n == 0 else Action(text=default_text(body))

    server = loopback(script=script)
    recipe = classification_recipe(server.base_url, generate={"per_label": 1, "batch_size": 1})
    recipe["generators"][0]["concurrency"] = 1
    build(load_recipe(write_recipe(tmp_path / "r.yaml", recipe)), tmp_path / "run", progress=False)
    first, second = server.log[0], server.log[1]
    assert first.fingerprint == second.fingerprint
    assert second.started - first.started >= 0.45


def test_json_schema_refused_steps_down_to_json_object(tmp_path: Path, loopback, canary_key: str) -> None:
    server = loopback(accept_json_schema=False)
    spec = load_recipe(write_recipe(tmp_path / "r.yaml", classification_recipe(server.base_url)))
    result = build(spec, tmp_path / "run", progress=False)
    assert result.complete
    formats = [r.body.get("response_format", {}).get("type") for r in server.log]
    assert formats[0] == "json_schema" and formats[-1] == "json_object"
    assert all(r.body["response_format"]["schema"]["required"] for r in server.log if r.status == 200)


def test_canary_key_never_leaves_the_request_header(tmp_path: Path, loopback, canary_key: str, capfd) -> None:
    server = loopback()
    recipe = write_recipe(tmp_path / "r.yaml", classification_recipe(server.base_url))
    out = tmp_path / "run"
    assert main(["build", str(recipe), "--out", str(out)]) == 0
    assert main(["validate", str(recipe)]) == 0
    captured = capfd.readouterr()
    assert CANARY_KEY not in captured.out + captured.err
    for path in out.rglob("*"):
        if path.is_file():
            assert CANARY_KEY.encode() not in path.read_bytes(), path
    # It did reach the server, where it belongs.
    assert server.log[0].headers["authorization"] == f"Bearer {CANARY_KEY}"


def test_missing_key_fails_clearly(tmp_path: Path, loopback, monkeypatch, capsys) -> None:
    monkeypatch.delenv("FACTORY_TEST_KEY", raising=False)
    server = loopback()
    recipe = write_recipe(tmp_path / "r.yaml", classification_recipe(server.base_url))
    assert main(["build", str(recipe), "--out", str(tmp_path / "run"), "--no-progress"]) == 1
    assert "FACTORY_TEST_KEY is not set" in capsys.readouterr().err
    assert server.log == []


def test_budget_exhausted_is_reported(tmp_path: Path, loopback, canary_key: str, capsys) -> None:
    server = loopback(script=lambda body, n: Action(text="I'm sorry, but I can't assist with that."))
    recipe = classification_recipe(server.base_url, generate={"per_label": 3, "max_requests": 8})
    path = write_recipe(tmp_path / "r.yaml", recipe)
    assert main(["build", str(path), "--out", str(tmp_path / "run"), "--no-progress"]) == 3
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "budget_exhausted"
    assert manifest["budget"] == {"max_requests": 8, "used": 8}
    assert len(server.log) == 8
    assert manifest["progress"]["positive"]["reached"] is False
    error = capsys.readouterr().err
    assert "the request budget ran out (8 of 8 requests): 8 reply(ies) rejected (refusal 8)" in error
    assert manifest["stopped"].startswith("the request budget ran out")


def test_generators_share_prompts_by_weight(tmp_path: Path, loopback, canary_key: str) -> None:
    a, b = loopback(), loopback()
    recipe = classification_recipe(a.base_url, generate={"per_label": 30, "batch_size": 16})
    base = recipe["generators"][0]
    recipe["generators"] = [{**base, "name": "a", "weight": 3}, {**base, "name": "b", "base_url": b.base_url, "weight": 1}]
    result = build(load_recipe(write_recipe(tmp_path / "r.yaml", recipe)), tmp_path / "run", progress=False)
    share = len(a.log) / (len(a.log) + len(b.log))
    assert 0.6 < share < 0.9
    table = pd.read_parquet(tmp_path / "run" / "dataset" / "data" / "train.parquet")
    assert set(table["generator"]) == {"a", "b"}
    assert result.complete


def test_second_build_on_a_locked_run_fails(tmp_path: Path, loopback, canary_key: str) -> None:
    server = loopback()
    spec = load_recipe(write_recipe(tmp_path / "r.yaml", classification_recipe(server.base_url)))
    with RunStore(tmp_path / "run"), pytest.raises(RunLockedError, match="in use by another"):
        build(spec, tmp_path / "run", progress=False)
    assert server.log == []


def test_sigkill_mid_generation_resumes_without_resending(tmp_path: Path, loopback, canary_key: str) -> None:
    """Kill -9 during generation; the re-run finishes with exact counts and re-sends no finished request."""
    server = loopback(delay=0.05)
    recipe = classification_recipe(server.base_url, generate={"per_label": 40, "batch_size": 4})
    path = write_recipe(tmp_path / "r.yaml", recipe)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "factory", "build", str(path), "--out", str(out), "--no-progress"]
    env = {**os.environ, "FACTORY_TEST_KEY": CANARY_KEY}
    assert_resumes_after_sigkill(server, cmd, env, out, per_label=40)


def test_manifest_names_the_embeddings_a_build_used(tmp_path: Path, loopback, canary_key: str) -> None:
    server = loopback()
    plain = build(load_recipe(write_recipe(tmp_path / "p.yaml", classification_recipe(server.base_url))),
                  tmp_path / "plain", progress=False)
    assert "embeddings" not in plain.manifest  # exact_dedup alone embeds nothing
    recipe = classification_recipe(server.base_url)
    recipe["filters"] = [{"type": "exact_dedup"}, {"type": "semantic_dedup"}]
    spec = load_recipe(write_recipe(tmp_path / "r.yaml", recipe))
    expected = {"model": DEFAULT_EMBEDDING_MODEL, "precision": Embedder().resolved_precision}
    assert build(spec, tmp_path / "run", progress=False).manifest.embeddings == expected
    # A re-run reads every vector from embeddings.sqlite and loads no model, yet says the same.
    assert build(spec, tmp_path / "run", progress=False).manifest.embeddings == expected
