"""The llama.cpp backend, running the packaged SmolLM2-135M in this process.

Every behaviour runs twice: one request at a time through llama-cpp-python's chat API
(`parallel: 1`), and through the batched engine (`parallel: 4`).
"""

from __future__ import annotations

import asyncio
import json

import pytest

from factory.generators.catalog import CATALOG
from factory.generators.llamacpp import LlamaCppGenerator
from factory.generators.params import LlamaCppParams
from factory.records import Completion, Prompt

SCHEMA = {
    "type": "object",
    "properties": {
        "text": {"type": "string", "maxLength": 120},
        "label": {"type": "string", "enum": ["fresh", "rotten"]},
    },
    "required": ["text", "label"],
}
MESSAGES = [
    {"role": "system", "content": "You write short movie reviews as JSON."},
    {"role": "user", "content": 'Write one short negative review of a horror film. Reply as {"text": ..., "label": ...}.'},
]


def prompt(seed: int, *, schema: dict | None = SCHEMA, messages: list | None = None, index: int = 0) -> Prompt:
    return Prompt(bucket="rotten", index=index, messages=messages or MESSAGES, generator="smol", seed=seed,
                  schema=schema)


@pytest.fixture(scope="module", params=[1, 4], ids=["sequential", "batched"])
def smol(request: pytest.FixtureRequest) -> LlamaCppGenerator:
    gen = LlamaCppGenerator(LlamaCppParams(
        backend="llamacpp", name="smol", model="smollm2-135m-instruct", temperature=0.9, max_tokens=96, n_ctx=1024,
        parallel=request.param,
    ))
    gen.load()
    yield gen
    gen.close()


@pytest.mark.slow
def test_json_constrained_reply_parses_to_the_schema(smol: LlamaCppGenerator) -> None:
    reply = smol.complete(prompt(seed=1))
    assert reply.error is None
    assert reply.finish_reason == "stop", reply
    data = json.loads(reply.text)
    assert isinstance(data, dict) and set(data) == {"text", "label"}
    assert data["label"] in {"fresh", "rotten"}
    assert reply.model == "smollm2-135m-instruct"
    assert reply.prompt_tokens > 0 and reply.completion_tokens > 0 and reply.seconds > 0


@pytest.mark.slow
def test_same_seed_same_text_other_seed_other_text(smol: LlamaCppGenerator) -> None:
    first = smol.complete(prompt(seed=7))
    # A different request in between (same system prompt, so its KV prefix is reused) must not leak.
    other_user = [MESSAGES[0], {"role": "user", "content": "Write one short positive review of a comedy."}]
    smol.complete(prompt(seed=8, messages=other_user))
    again = smol.complete(prompt(seed=7))
    assert first.text and first.text == again.text
    assert first.completion_tokens == again.completion_tokens
    others = {smol.complete(prompt(seed=s)).text for s in (11, 12, 13)}
    assert others - {first.text}, "three other seeds all reproduced seed 7's reply"


@pytest.mark.slow
def test_free_text_when_no_schema_and_length_cut(smol: LlamaCppGenerator) -> None:
    chat = [{"role": "user", "content": "Tell me a long story about a lighthouse keeper."}]
    reply = smol.complete(prompt(seed=3, schema=None, messages=chat))
    assert reply.error is None and reply.text
    assert reply.completion_tokens <= 96
    if reply.completion_tokens == 96:
        assert reply.finish_reason == "length"


@pytest.mark.slow
def test_a_failing_request_becomes_an_error_completion(smol: LlamaCppGenerator) -> None:
    too_long = [{"role": "user", "content": "word " * 3000}]  # far past n_ctx=1024
    reply = smol.complete(prompt(seed=1, schema=None, messages=too_long))
    assert isinstance(reply, Completion)
    assert reply.text == "" and reply.error and "context" in reply.error.lower()
    # ...and the model still works afterwards.
    assert smol.complete(prompt(seed=1)).error is None


@pytest.mark.slow
def test_generate_keeps_prompt_order(smol: LlamaCppGenerator) -> None:
    prompts = [prompt(seed=s, index=i) for i, s in enumerate((21, 22))]
    replies = asyncio.run(smol.generate(prompts))
    assert [r.text for r in replies] == [smol.complete(p).text for p in prompts]


def test_identity_names_the_model_by_hash_not_by_path(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    params = LlamaCppParams(backend="llamacpp", model="smollm2-135m-instruct", temperature=0.5, parallel=1)
    ident = LlamaCppGenerator(params).identity()
    assert ident["backend"] == "llamacpp" and ident["model"] == "smollm2-135m-instruct"
    assert ident["sha256"] == CATALOG["smollm2-135m-instruct"].sha256
    assert ident["temperature"] == 0.5 and ident["json_mode"] is True
    assert "/" not in json.dumps(ident)  # no machine-specific path anywhere in the key
    monkeypatch.setenv("FACTORY_CACHE_DIR", str(tmp_path))
    assert LlamaCppGenerator(params).identity() == ident
    other = LlamaCppGenerator(params.model_copy(update={"temperature": 0.6})).identity()
    assert other != ident
    # The batched engine samples differently (and its numbers may depend on its width): its own keys.
    batched = LlamaCppGenerator(params.model_copy(update={"parallel": 4})).identity()
    assert batched == {**ident, "engine": "batched", "parallel": 4}
    assert LlamaCppGenerator(params.model_copy(update={"parallel": 8})).identity() != batched


def test_factory_models_shows_the_speed_measured_on_this_machine(tmp_path, monkeypatch, capsys) -> None:
    """No promised tok/s: what a build with the model measured here, once it has run, or nothing."""
    from factory.cli import main

    monkeypatch.setenv("FACTORY_CACHE_DIR", str(tmp_path))
    main(["models"])
    assert "measured here" not in capsys.readouterr().out and "tok/s" not in CATALOG["qwen2.5-coder-1.5b-instruct"].description
    gen = LlamaCppGenerator(LlamaCppParams(backend="llamacpp", name="smol", model="smollm2-135m-instruct",
                                           temperature=0.9, max_tokens=120, n_ctx=1024, json_mode=False))
    tokens = sum(gen.complete(prompt(seed, schema=None)).completion_tokens for seed in range(6))
    gen.close()
    assert tokens >= 200, "too few tokens for a measurement: the test would prove nothing"
    main(["models"])
    line = next(row for row in capsys.readouterr().out.splitlines() if row.startswith("smollm2-135m-instruct"))
    assert f"{tokens} tokens" in line and "measured here:" in line and "tok/s generated" in line
