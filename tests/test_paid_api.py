"""Money and rate limits on a paid API, against the loopback OpenAI server: prices and cost per kept
row, the hard budget across resumes, insufficient_quota, RPM/TPM, and the Batch API."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import classification_recipe, write_recipe
from loopback_openai import Action, LoopbackOpenAI, default_text, insufficient_quota

from factory import build, load_recipe
from factory.cli import main
from factory.generators.meter import MoneyMeter
from factory.generators.openai_compat import OpenAIGenerator
from factory.generators.params import OpenAIParams
from factory.generators.pricing import lookup
from factory.generators.ratelimit import RateLimiter, parse_reset
from factory.records import Prompt

PRICE = {"input": 100.0, "output": 200.0, "batch_input": 50.0, "batch_output": 100.0}  # USD per million tokens


def _cost(entry: Any, rate_in: float, rate_out: float) -> float:
    text = default_text(entry.body)
    return (50 * rate_in + max(1, len(text.split())) * rate_out) / 1e6


def priced_recipe(base_url: str, **overrides: Any) -> dict[str, Any]:
    recipe = classification_recipe(base_url, **overrides)
    recipe["generators"][0]["price"] = dict(PRICE)
    recipe["generators"][0]["max_tokens"] = 64
    return recipe


def manifest(run: Path) -> dict[str, Any]:
    return json.loads((run / "manifest.json").read_text())


def test_the_price_table_is_dated_and_prices_known_models() -> None:
    price = lookup("gpt-4o-mini")
    assert price is not None and price.input > 0 and price.output > price.input
    assert price.batch_input is not None and price.batch_input < price.input
    assert lookup("openai/gpt-4o-mini") == price
    assert lookup("no-such-model-anywhere") is None


def test_cost_per_request_and_per_kept_row_from_the_table(tmp_path: Path, loopback, canary_key: str) -> None:
    server = loopback()
    recipe = classification_recipe(server.base_url, generate={"per_label": 4})
    recipe["generators"][0]["model"] = "gpt-4o-mini"  # priced by the shipped table
    path = write_recipe(tmp_path / "r.yaml", recipe)
    result = build(load_recipe(path), tmp_path / "run", progress=False)
    cost = manifest(tmp_path / "run")["cost"]
    table = lookup("gpt-4o-mini")
    expected = _cost_all(server.completed(), table.input, table.output)
    assert cost["dataset_usd"] == pytest.approx(expected, abs=1e-6)
    assert cost["this_build_usd"] == pytest.approx(expected, abs=1e-6)
    assert cost["per_kept_row_usd"] == pytest.approx(expected / result.manifest.rows, rel=1e-3)
    assert cost["price_table"]["date"] and cost["price_table"]["litellm_version"]
    assert cost["unpriced"] == []
    # A re-run answers from the cache: the rows cost the same, this build nothing, the run no more.
    build(load_recipe(path), tmp_path / "run", progress=False)
    again = manifest(tmp_path / "run")["cost"]
    assert again["dataset_usd"] == pytest.approx(expected, abs=1e-6)
    assert again["this_build_usd"] == 0 and again["run_total_usd"] == pytest.approx(expected, abs=1e-6)
    card = (tmp_path / "run" / "README.md").read_text()
    assert "per kept row" in card


def _cost_all(entries: list[Any], rate_in: float, rate_out: float) -> float:
    return sum(_cost(e, rate_in, rate_out) for e in entries)


def test_an_unknown_price_is_null_and_said_once(tmp_path: Path, loopback, canary_key: str, caplog) -> None:
    server = loopback()
    path = write_recipe(tmp_path / "r.yaml", classification_recipe(server.base_url, generate={"per_label": 3}))
    with caplog.at_level(logging.WARNING):
        build(load_recipe(path), tmp_path / "run", progress=False)
    cost = manifest(tmp_path / "run")["cost"]
    assert cost["dataset_usd"] is None and cost["per_kept_row_usd"] is None and cost["unpriced"] == ["loop"]
    said = [r for r in caplog.records if "no price is known" in r.getMessage()]
    assert len(said) == 1 and "test-model" in said[0].getMessage()


def test_a_budget_needs_prices_and_says_so_before_any_request(tmp_path: Path, loopback, canary_key: str, capsys) -> None:
    server = loopback()
    path = write_recipe(tmp_path / "r.yaml", classification_recipe(server.base_url, budget={"usd": 1.0}))
    assert main(["build", str(path), "--out", str(tmp_path / "run"), "--no-progress"]) == 1
    error = capsys.readouterr().err
    assert "budget.usd" in error and "loop (test-model)" in error and "price" in error
    path = write_recipe(tmp_path / "r2.yaml", classification_recipe(server.base_url))
    assert main(["build", str(path), "--budget", "1", "--out", str(tmp_path / "run"), "--no-progress"]) == 1
    assert "--budget" in capsys.readouterr().err
    assert server.log == []


def test_the_money_budget_is_never_passed_and_a_resume_never_pays_twice(tmp_path: Path, loopback, canary_key: str,
                                                                         capsys) -> None:
    server = loopback()
    budget = 0.4
    path = write_recipe(tmp_path / "r.yaml", priced_recipe(server.base_url, generate={"per_label": 40},
                                                           budget={"usd": budget}))
    run = tmp_path / "run"
    assert main(["build", str(path), "--out", str(run), "--no-progress"]) == 3
    first = manifest(run)
    assert first["status"] == "budget_exhausted" and first["cost"]["refused_requests"] > 0
    paid = _cost_all(server.completed(), PRICE["input"], PRICE["output"])
    assert first["cost"]["run_total_usd"] == pytest.approx(paid, abs=1e-9) and paid <= budget
    assert 0 < first["rows"] < 80
    assert "the money budget is spent" in capsys.readouterr().err
    sent = len(server.log)

    # The same budget again: what was paid counts, so at most a request or two more fit.
    assert main(["build", str(path), "--out", str(run), "--no-progress"]) == 3
    second = manifest(run)
    assert second["cost"]["run_total_usd"] <= budget
    assert second["cost"]["this_build_usd"] == pytest.approx(
        _cost_all(server.completed()[sent:], PRICE["input"], PRICE["output"]), abs=1e-9)

    # A bigger budget finishes the job; no request is ever answered twice.
    assert main(["build", str(path), "--budget", "5", "--out", str(run), "--no-progress"]) == 0
    done = manifest(run)
    assert done["status"] == "complete" and done["rows"] == 80
    assert done["cost"]["run_total_usd"] == pytest.approx(
        _cost_all(server.completed(), PRICE["input"], PRICE["output"]), abs=1e-9)
    assert max(Counter(e.fingerprint for e in server.completed()).values()) == 1


def test_insufficient_quota_stops_the_build_at_once(tmp_path: Path, loopback, canary_key: str, capsys) -> None:
    server = loopback(script=lambda body, n: insufficient_quota())
    path = write_recipe(tmp_path / "r.yaml", classification_recipe(server.base_url, generate={"per_label": 30}))
    assert main(["build", str(path), "--out", str(tmp_path / "run"), "--no-progress"]) == 3
    assert len(server.log) <= 4  # the requests already in flight (concurrency 4), then nothing
    m = manifest(tmp_path / "run")
    assert m["status"] == "requests_failed"
    assert "quota or credit is spent" in m["stopped"] and "quota or credit is spent" in capsys.readouterr().err


def prompts(n: int) -> list[Prompt]:
    return [Prompt("b", i, [{"role": "user", "content": f'Write {i}. {{"label": "b"}}'}], "g", i) for i in range(n)]


def run_generator(generator: OpenAIGenerator, n: int) -> list[Any]:
    async def go() -> list[Any]:
        try:
            return await generator.generate(prompts(n))
        finally:
            await generator.aclose()

    return asyncio.run(go())


def generator_for(server: LoopbackOpenAI, **params: Any) -> OpenAIGenerator:
    return OpenAIGenerator(OpenAIParams(backend="openai", model="m", base_url=server.base_url, api_key_env=None,
                                        max_tokens=16, timeout=5.0, backoff=0.05, **params))


def test_limits_learned_from_headers_stop_the_429s_after_the_start() -> None:
    # The server allows 20 requests per 2 s; the client learns it from x-ratelimit-* (a 2 s minute, for speed).
    with LoopbackOpenAI(rpm=20, window=2.0) as server:
        generator = generator_for(server, concurrency=8, max_attempts=10)
        generator.limiter = RateLimiter(8, period=2.0)
        started = time.time()
        replies = run_generator(generator, 60)
    assert all(r.error is None for r in replies)
    assert generator.limiter.learned == {"rpm": 20}
    late = [t for t in server.rate_limited_at if t > started + 1.0]
    assert late == [] and server.rate_limited <= 8
    answered = sorted(e.finished for e in server.completed())
    rate = (len(answered) - 20) / (answered[-1] - answered[19])  # after the first bucketful
    assert rate >= 0.9 * 10 * 0.9  # near the limit's 10 requests per second


def test_configured_limits_send_no_429_at_all() -> None:
    with LoopbackOpenAI(rpm=20, tpm=2000, window=2.0) as server:
        generator = generator_for(server, concurrency=8)
        generator.limiter = RateLimiter(8, rpm=20, tpm=2000, period=2.0)
        replies = run_generator(generator, 40)
    assert all(r.error is None for r in replies) and server.rate_limited == 0


def test_a_429_halves_the_window_and_successes_widen_it_again() -> None:
    with LoopbackOpenAI(script=lambda body, n: Action(status=429) if n == 0 else Action(text=default_text(body))) as server:
        generator = generator_for(server, concurrency=8, max_attempts=3)
        replies = run_generator(generator, 1)
        assert replies[0].error is None and generator.limiter.rate_limited == 1
        assert generator.limiter.window == pytest.approx(4 + 1 / 4)  # halved, then one success: +1/window
    limiter = RateLimiter(8)
    limiter.limited(0.5)
    assert limiter.window == 4 and limiter.paused_until > time.monotonic()
    assert parse_reset("6m0s") == 360 and parse_reset("120ms") == pytest.approx(0.12) and parse_reset("1.5s") == 1.5


def test_the_meter_waits_for_requests_in_flight_and_refuses_what_can_never_fit() -> None:
    async def go() -> MoneyMeter:
        meter = MoneyMeter(limit_usd=1.0)
        assert await meter.admit(0.6)
        waiting = asyncio.ensure_future(meter.admit(0.5))  # fits only once the first settles
        await asyncio.sleep(0.01)
        assert not waiting.done()
        meter.settle(0.6, 0.1)
        assert await waiting
        third = asyncio.ensure_future(meter.admit(0.5))  # waits: 0.1 spent + 0.5 reserved + 0.5
        await asyncio.sleep(0.01)
        meter.settle(0.5, 0.5)
        assert not await third  # 0.6 spent: 0.5 more could pass the limit, whatever settles
        assert await meter.admit(0.3)
        return meter

    meter = asyncio.run(go())
    assert meter.total_usd == pytest.approx(0.6) and meter.refused == 1


# -- the Batch API ---------------------------------------------------------------------------------


def batch_recipe(base_url: str, per_label: int = 6, **batch: Any) -> dict[str, Any]:
    recipe = priced_recipe(base_url, generate={"per_label": per_label})
    recipe["generators"][0].update(mode="batch", batch={"poll_s": 0.05, "poll_max_s": 0.2, **batch})
    return recipe


def test_batch_mode_builds_through_files_and_batches_at_batch_prices(tmp_path: Path, loopback, canary_key: str) -> None:
    server = loopback(batch_seconds=0.3)
    path = write_recipe(tmp_path / "r.yaml", batch_recipe(server.base_url))
    result = build(load_recipe(path), tmp_path / "run", progress=False)
    assert result.complete and result.manifest.rows == 12
    assert server.log and all(e.batch_id for e in server.log)  # nothing went through chat completions
    cost = manifest(tmp_path / "run")["cost"]
    assert cost["dataset_usd"] == pytest.approx(_cost_all(server.completed(), PRICE["batch_input"], PRICE["batch_output"]),
                                                abs=1e-9)
    journal = (tmp_path / "run" / "batches" / "loop" / "journal.jsonl").read_text().splitlines()
    assert [json.loads(line)["event"] for line in journal][:3] == ["upload", "file", "submitted"]
    # Collected replies are in the cache: a re-run submits nothing.
    batches = len(server.batches)
    build(load_recipe(path), tmp_path / "run", progress=False)
    assert len(server.batches) == batches


def test_an_expired_batch_keeps_its_replies_and_resubmits_the_rest(tmp_path: Path, loopback, canary_key: str) -> None:
    server = loopback(batch_seconds=0.3, batch_expire_after=lambda index: 3 if index == 0 else None)
    result = build(load_recipe(write_recipe(tmp_path / "r.yaml", batch_recipe(server.base_url))), tmp_path / "run",
                   progress=False)
    assert result.complete
    first, second = list(server.batches.values())[:2]
    assert first.status == "expired" and len(first.output_lines) == 3
    assert len(second.requests) == len(first.requests) - 3  # only what the first did not answer
    assert max(Counter(e.fingerprint for e in server.completed()).values()) == 1


def test_a_failed_line_is_resubmitted_up_to_the_limit(tmp_path: Path, loopback, canary_key: str) -> None:
    server = loopback(batch_seconds=0.2, script=lambda body, n: Action(status=500))
    recipe = batch_recipe(server.base_url, per_label=1, resubmits=1)
    recipe["generate"]["max_requests"] = 2
    result = build(load_recipe(write_recipe(tmp_path / "r.yaml", recipe)), tmp_path / "run", progress=False)
    assert not result.complete and result.manifest.status in ("requests_failed", "budget_exhausted")
    assert len(server.batches) == 2 and Counter(e.fingerprint for e in server.log).most_common(1)[0][1] == 2


def test_no_wait_submits_then_a_later_build_collects_without_paying_twice(tmp_path: Path, loopback, canary_key: str,
                                                                           capsys) -> None:
    server = loopback(batch_seconds=0.5)
    path = write_recipe(tmp_path / "r.yaml", batch_recipe(server.base_url))
    run = tmp_path / "run"
    assert main(["build", str(path), "--no-wait", "--out", str(run), "--no-progress"]) == 3
    assert manifest(run)["status"] == "batch_pending" and "run the same command again" in capsys.readouterr().err
    assert len(server.batches) == 1
    # As if the build had died between creating the batch and noting its id: the journal lacks the id.
    journal = run / "batches" / "loop" / "journal.jsonl"
    lines = [line for line in journal.read_text().splitlines() if json.loads(line)["event"] != "submitted"]
    journal.write_text("\n".join(lines) + "\n")
    assert main(["build", str(path), "--out", str(run), "--no-progress"]) == 0
    assert len(server.batches) == 1  # found again by its input file, not created twice
    assert manifest(run)["rows"] == 12
    assert max(Counter(e.fingerprint for e in server.completed()).values()) == 1


def test_a_build_killed_mid_batch_collects_it_on_the_next_run(tmp_path: Path, loopback, canary_key: str) -> None:
    server = loopback(batch_seconds=4.0)
    path = write_recipe(tmp_path / "r.yaml", batch_recipe(server.base_url))
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "factory", "build", str(path), "--out", str(run), "--no-progress"]
    env = {**os.environ, "FACTORY_TEST_KEY": canary_key}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not any(b.status == "in_progress" for b in server.batches.values()) and time.time() < deadline:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert len(server.batches) == 1 and not (run / "manifest.json").exists()
    assert subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300).returncode == 0
    assert len(server.batches) == 1 and manifest(run)["rows"] == 12
    assert max(Counter(e.fingerprint for e in server.completed()).values()) == 1


# -- the estimate ----------------------------------------------------------------------------------


def test_the_estimate_sends_nothing_and_its_prompt_tokens_are_exact(tmp_path: Path, loopback, canary_key: str,
                                                                     smollm2_tokenizer, capsys) -> None:
    def templated(messages: list[dict[str, str]]) -> int:  # what a server running SmolLM2 bills
        text = smollm2_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return len(smollm2_tokenizer(text, add_special_tokens=False)["input_ids"])

    server = loopback(prompt_tokens=templated)
    recipe = priced_recipe(server.base_url, generate={"per_label": 5}, budget={"usd": 0.5})
    recipe["generators"][0]["tokenizer"] = "smollm2-135m-instruct"
    path = write_recipe(tmp_path / "r.yaml", recipe)
    run = tmp_path / "run"
    assert main(["build", str(path), "--estimate", "--out", str(run)]) == 0
    shown = capsys.readouterr().out
    assert server.log == [] and not run.exists()
    assert "nothing was sent" in shown and "(exact)" in shown and "the budget caps it at $0.50" in shown
    from factory.builder.estimate import estimate

    planned = estimate(load_recipe(path), run)["generators"][0]
    assert planned["requests"] == 12  # ceil(5 x 1.05) per label
    build(load_recipe(path), run, progress=False)
    first_round = server.completed()[:12]
    assert planned["prompt_tokens"] == sum(templated(e.body["messages"]) for e in first_round)
    assert planned["usd"]["at_most"] == 0.5  # 12 x 16 requests could cost more: the budget caps it
    # A second estimate measures the replies it finds in the cache.
    again = estimate(load_recipe(path), run)["generators"][0]
    assert again["cached"] == 12 and again["prompt_tokens"] == 0 and "cache" in again["assumed_because"]


def test_the_byte_bound_is_never_below_a_real_tokenizer(smollm2_tokenizer) -> None:
    from factory.generators.tokens import PromptCounter

    bound = PromptCounter()
    for text in ("plain words", "Ünïcödé ✓ 漢字テスト 🙂🙂", "x" * 500, '{"label": "fresh", "text": "A sharp film."}'):
        messages = [{"role": "system", "content": "Answer in JSON."}, {"role": "user", "content": text}]
        rendered = smollm2_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert bound.upper_bound(messages) >= len(smollm2_tokenizer(rendered, add_special_tokens=False)["input_ids"])


def test_a_budget_on_the_ray_engine_is_refused(tmp_path: Path, loopback, canary_key: str, capsys) -> None:
    server = loopback()
    path = write_recipe(tmp_path / "r.yaml", priced_recipe(server.base_url, budget={"usd": 1.0}))
    assert main(["build", str(path), "--engine", "ray", "--out", str(tmp_path / "run"), "--no-progress"]) == 1
    assert "local engine only" in capsys.readouterr().err and server.log == []


def test_a_tokenizer_that_cannot_load_stops_before_any_request(tmp_path: Path, loopback, canary_key: str, capsys) -> None:
    server = loopback()
    recipe = priced_recipe(server.base_url)
    recipe["generators"][0]["tokenizer"] = str(tmp_path / "no-such-tokenizer")
    path = write_recipe(tmp_path / "r.yaml", recipe)
    for extra in (["--estimate"], []):
        assert main(["build", str(path), *extra, "--out", str(tmp_path / "run"), "--no-progress"]) == 1
        assert "cannot be loaded" in capsys.readouterr().err
    assert server.log == []
