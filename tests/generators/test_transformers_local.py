"""The transformers backend: SmolLM2-135M loaded from the packaged GGUF, generating in batches."""

from __future__ import annotations

import asyncio

import pytest

from factory.generators.catalog import CATALOG
from factory.generators.params import TransformersParams
from factory.generators.transformers_local import TransformersGenerator, batch_seed
from factory.records import Prompt

QUESTIONS = [
    "Tell me a long story about a lighthouse keeper.",
    "Describe the city of Paris in great detail.",
    "Explain, step by step, how to bake bread.",
]


def prompts() -> list[Prompt]:
    return [
        Prompt(bucket="all", index=i, messages=[{"role": "user", "content": q}], generator="hf", seed=100 + i)
        for i, q in enumerate(QUESTIONS)
    ]


@pytest.fixture(scope="module")
def smol() -> TransformersGenerator:
    gen = TransformersGenerator(TransformersParams(
        backend="transformers", name="hf", model="smollm2-135m-instruct", max_tokens=16, batch_size=2,
        temperature=0.9,
    ))
    gen.load()
    yield gen
    gen.close()


async def collect(gen: TransformersGenerator, items: list[Prompt]) -> list:
    return [pair async for pair in gen.stream(items)]


@pytest.mark.slow
def test_batched_generation_one_completion_per_prompt_in_order(smol: TransformersGenerator) -> None:
    items = prompts()
    pairs = asyncio.run(collect(smol, items))
    assert [p for p, _ in pairs] == items  # two batches: [0, 1], [2]
    for _, reply in pairs:
        assert reply.error is None and reply.text.strip()
        assert reply.model == "smollm2-135m-instruct"
        assert reply.prompt_tokens > 0 and 0 < reply.completion_tokens <= 16
        # These questions want far more than 16 tokens.
        assert reply.finish_reason == "length" and reply.completion_tokens == 16
    # The same batch with the same seeds gives the same text.
    again = smol.generate_batch(items[:2])
    assert [c.text for _, c in again] == [c.text for _, c in pairs[:2]]
    # generate() returns them in prompt order as well.
    assert [c.text for c in asyncio.run(smol.generate(items))] == [c.text for _, c in pairs]


@pytest.mark.slow
def test_a_failing_template_is_an_error_completion_not_an_exception(smol: TransformersGenerator) -> None:
    bad = Prompt(bucket="all", index=9, messages=[{"content": "no role"}], generator="hf", seed=1)  # type: ignore[list-item]
    good = prompts()[0]
    pairs = smol.generate_batch([bad, good])
    assert [p for p, _ in pairs] == [bad, good]
    assert pairs[0][1].error and pairs[0][1].text == ""
    assert pairs[1][1].error is None and pairs[1][1].text


def test_identity_and_batch_seed() -> None:
    params = TransformersParams(backend="transformers", model="smollm2-135m-instruct", batch_size=4)
    ident = TransformersGenerator(params).identity()
    assert ident["backend"] == "transformers" and ident["model"] == "smollm2-135m-instruct"
    assert ident["sha256"] == CATALOG["smollm2-135m-instruct"].sha256 and ident["batch_size"] == 4
    hub = TransformersGenerator(TransformersParams(backend="transformers", model="HuggingFaceTB/SmolLM2-135M"))
    assert "sha256" not in hub.identity() and hub.identity()["model"] == "HuggingFaceTB/SmolLM2-135M"
    assert batch_seed([1, 2]) == batch_seed([1, 2]) != batch_seed([2, 1])
    assert 0 <= batch_seed([10**12]) < 2**63
