"""The batched llama.cpp engine, on the packaged SmolLM2-135M for real.

Ctrl+C and resuming with the batched engine are in test_llamacpp_cpu.py, beside the sequential path's.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import yaml

from factory import build, load_recipe
from factory.generators.llamacpp import LlamaCppGenerator
from factory.generators.llamacpp_batch import BatchEngine, BatchRequest, SamplingSettings
from factory.generators.params import LlamaCppParams
from factory.records import Prompt

pytestmark = pytest.mark.slow
SMOL = "smollm2-135m-instruct"
SCHEMA = {"type": "object", "required": ["text", "label"],
          "properties": {"text": {"type": "string", "maxLength": 100}, "label": {"type": "string", "enum": ["fresh", "rotten"]}}}
SYSTEM = {"role": "system", "content": "You write labelled movie-review snippets as JSON for a classifier's training "
                                       "set. Each snippet is one or two sentences long, in the voice of a professional "
                                       "critic, and never names the label it was written for."}
TOPICS = ["a horror film's score", "a comedy's pacing", "a documentary's interviews", "a musical's choreography",
          "a western's landscapes", "a thriller's twist"]


def prompt(topic: str, seed: int) -> Prompt:
    user = {"role": "user", "content": f'Write one short review of {topic}. Reply as {{"text": ..., "label": ...}}.'}
    return Prompt(bucket="fresh", index=seed, messages=[SYSTEM, user], generator="smol", seed=seed, schema=SCHEMA)


@pytest.fixture(scope="module")
def batched() -> LlamaCppGenerator:
    gen = LlamaCppGenerator(LlamaCppParams(backend="llamacpp", name="smol", model=SMOL, temperature=0.9,
                                           max_tokens=96, n_ctx=512, parallel=4))
    gen.load()
    yield gen
    gen.close()


def test_a_reply_depends_on_its_own_prompt_not_on_the_requests_beside_it(batched: LlamaCppGenerator) -> None:
    target = prompt(TOPICS[0], 5)
    alone = asyncio.run(batched.generate([target]))[0]
    # Now in a full batch, in another slot, with a shared prefix evaluated once and copied in.
    crowd = [prompt(topic, 100 + i) for i, topic in enumerate(TOPICS[1:])]
    together = asyncio.run(batched.generate([*crowd[:2], target, *crowd[2:]]))
    assert alone.error is None and alone.text
    assert together[2].text == alone.text
    assert batched.engine_.stats.prefix_reused > 0, "the shared prefix was never reused: the test proves less"
    assert len({reply.text for reply in together}) == len(together)


def test_every_reply_follows_its_schema_and_has_its_own_seed(batched: LlamaCppGenerator) -> None:
    replies = asyncio.run(batched.generate([prompt(TOPICS[1], seed) for seed in range(6)]))
    for reply in replies:
        assert reply.error is None and reply.finish_reason == "stop", reply
        data = json.loads(reply.text)
        assert set(data) == {"text", "label"} and data["label"] in {"fresh", "rotten"}
    assert len({r.text for r in replies}) >= 5, "six seeds, one prompt: the seeds did not reach the sampler"


def test_the_grammar_is_checked_on_the_sampled_token_and_applied_in_full_only_when_it_fails(batched: LlamaCppGenerator) -> None:
    encoder = batched._chat
    params = batched.params
    requests = encoder.requests([prompt(topic, i) for i, topic in enumerate(TOPICS)], params)
    texts = {}
    for lazy in (True, False):
        engine = BatchEngine(batched.llm_.model, n_parallel=3, n_ctx_per_seq=512, n_threads=2,
                             sampling=SamplingSettings(params.temperature, params.top_p), lazy_grammar=lazy)
        replies: dict[int, str] = {}
        engine.run(requests, lambda request, reply, out=replies: out.__setitem__(id(request), reply.text))
        engine.close()
        texts[lazy] = replies
        for text in replies.values():
            assert set(json.loads(text)) == {"text", "label"}
        if lazy:
            assert 0 < engine.stats.grammar_full_passes < engine.stats.grammar_checks / 2
        else:
            assert engine.stats.grammar_checks == 0 and engine.stats.grammar_full_passes > engine.stats.generated
    assert len(texts[True]) == len(texts[False]) == len(TOPICS)


def test_a_prompt_longer_than_a_slot_fails_alone(batched: LlamaCppGenerator) -> None:
    too_long = Prompt(bucket="fresh", index=0, messages=[{"role": "user", "content": "word " * 800}], generator="smol",
                      seed=1, schema=None)
    replies = asyncio.run(batched.generate([prompt(TOPICS[2], 1), too_long, prompt(TOPICS[3], 2)]))
    assert replies[1].error and "context" in replies[1].error
    assert replies[0].error is None and replies[2].error is None


def test_engine_requests_need_not_share_anything(batched: LlamaCppGenerator) -> None:
    """Requests with no common prefix and no grammar: free text, each cut at its own max_tokens or stop string."""
    engine = batched.engine_
    tokens, _ = batched._chat.tokens([{"role": "user", "content": "Count from one to fifty in words."}])
    requests = [BatchRequest(tokens=tokens, prefix_len=0, seed=seed, max_tokens=n, tag=n) for seed, n in ((1, 3), (2, 9))]
    requests.append(BatchRequest(tokens=tokens, prefix_len=0, seed=3, max_tokens=40, stop=["o"], tag="stop"))
    got = {}
    with batched._lock:
        engine.run(requests, lambda request, reply: got.__setitem__(request.tag, reply))
    assert got[3].completion_tokens == 3 and got[3].finish_reason == "length"
    assert got[9].completion_tokens <= 9
    # Counting in words writes an "o" soon: the reply ends there, without it.
    assert got["stop"].finish_reason == "stop" and "o" not in got["stop"].text


def test_the_same_batched_build_twice_gives_byte_identical_rows(tmp_path: Path) -> None:
    recipe = {
        "name": "twice", "task": "classification", "seed": 3,
        "description": "Write one short movie review.",
        "labels": {"good": {"description": "The critic liked the film."},
                   "bad": {"description": "The critic disliked the film."}},
        "generate": {"per_label": 6, "few_shot": 0},
        "generators": [{"backend": "llamacpp", "model": SMOL, "max_tokens": 64, "n_ctx": 512, "parallel": 4}],
        "filters": [{"type": "exact_dedup"}],
    }
    path = tmp_path / "twice.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    first = build(load_recipe(path), tmp_path / "one", progress=False)
    second = build(load_recipe(path), tmp_path / "two", progress=False)
    assert first.manifest.generators[0]["parallel"] == 4
    rows = [(tmp_path / run / "generated.jsonl").read_bytes() for run in ("one", "two")]
    assert rows[0] and rows[0] == rows[1]
    assert first.manifest.rows == second.manifest.rows > 0
