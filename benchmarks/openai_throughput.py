"""OpenAI-compatible path: throughput at concurrency C against a server with fixed latency L.

Target: the factory reaches at least 0.9 x C / L requests/s for C = 16 and C = 64. The baseline,
measured in the same run, is a bare AsyncOpenAI loop with a semaphore. The factory is measured
twice: its generator alone, and `build()`'s generation phase (prompting, parsing, cache writes, filters).
p50 overhead = the factory's median request latency minus the bare loop's.

    python benchmarks/openai_throughput.py [--latency 0.25] [--requests-per-slot 8]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from _loopback import loopback_server

from factory import build
from factory.generators.openai_compat import OpenAIGenerator
from factory.generators.params import OpenAIParams
from factory.recipe_file import parse_recipe
from factory.tasks import make_recipe


def recipe(base_url: str, concurrency: int, rows: int) -> dict:
    return {
        "name": "throughput", "task": "classification", "seed": 1,
        "labels": {"a": {"description": "first"}, "b": {"description": "second"}},
        "axes": {"topic": [f"t{i}" for i in range(50)]},
        "generate": {"per_label": rows // 2, "few_shot": 0, "batch_size": concurrency},
        "generators": [{"name": "loop", "backend": "openai", "model": "m", "base_url": base_url, "api_key_env": None,
                        "concurrency": concurrency, "timeout": 30, "max_attempts": 1}],
    }


async def bare_loop(base_url: str, concurrency: int, n: int) -> tuple[float, list[float]]:
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0)
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one(i: int) -> None:
        async with gate:
            t = time.perf_counter()
            await client.chat.completions.create(model="m", seed=i, messages=[
                {"role": "user", "content": f'write "label": "a" number {i}'}])
            latencies.append(time.perf_counter() - t)

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    elapsed = time.perf_counter() - start
    await client.close()
    return n / elapsed, latencies


async def factory_generator(base_url: str, concurrency: int, n: int) -> tuple[float, list[float]]:
    spec = parse_recipe(recipe(base_url, concurrency, n))
    prompts = [make_recipe(spec).prompt("a", i) for i in range(n)]
    generator = OpenAIGenerator(OpenAIParams(**spec.generators[0].model_dump()))
    generator.load()
    start = time.perf_counter()
    completions = [c async for _, c in generator.stream(prompts)]
    elapsed = time.perf_counter() - start
    await generator.aclose()
    assert all(c.error is None for c in completions)
    return n / elapsed, [c.seconds for c in completions]


def factory_build(base_url: str, concurrency: int, n: int) -> float:
    """Requests/s of build()'s generation phase (prompting, requests, parsing, cache and row writes,
    filter rounds); the dataset card and report.html written after it are not request throughput."""
    spec = parse_recipe(recipe(base_url, concurrency, n))
    with tempfile.TemporaryDirectory() as tmp:
        result = build(spec, Path(tmp) / "run", progress=False)
    return result.manifest.budget.used / result.manifest.timings.generation_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency", type=float, default=0.25)
    parser.add_argument("--requests-per-slot", type=int, default=8)
    args = parser.parse_args()
    L = args.latency
    print(f"loopback server latency L = {L:.3f} s")
    print(f"{'C':>4} {'target':>9} {'bare loop':>10} {'generator':>10} {'build()':>9} {'p50 overhead':>13}  verdict")
    with loopback_server(L) as base_url:
        for C in (16, 64):
            n = C * args.requests_per_slot
            target = 0.9 * C / L
            bare, bare_lat = asyncio.run(bare_loop(base_url, C, n))
            gen, gen_lat = asyncio.run(factory_generator(base_url, C, n))
            whole = factory_build(base_url, C, n)
            overhead_ms = (statistics.median(gen_lat) - statistics.median(bare_lat)) * 1000
            verdict = "PASS" if min(gen, whole) >= target else "FAIL"
            print(f"{C:>4} {target:>7.1f}/s {bare:>8.1f}/s {gen:>8.1f}/s {whole:>7.1f}/s {overhead_ms:>10.2f} ms  {verdict}")


if __name__ == "__main__":
    main()
