"""Run a generator's requests on Ray actors: the same backend, loaded once per actor, many actors.

`RayGenerator` wraps one entry of a recipe's `generators:`. Its identity is the wrapped backend's, so
a Ray build and a local build of a recipe share request keys (and a cache): the driver stays the only
writer of the run directory, committing each completion as it arrives (the builder's `_send`). Each
actor builds and loads the backend once (an in-process model per actor, or an API client with its
share of the concurrency limit). Actors restart when they die and Ray re-runs their unfinished
requests (`max_restarts`, `max_task_retries`); a request that finally fails is a failed Completion,
not cached, sent again by the next build. Nothing here is imported unless a build asks for Ray.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from factory.engines.ray_cluster import connect
from factory.errors import require
from factory.generators import build_generator
from factory.generators.base import Generator, GeneratorParams
from factory.records import Completion, Prompt


class GeneratorWorker:
    """One Ray actor: a loaded backend that answers one prompt per call (several at once for an API)."""

    def __init__(self, params: GeneratorParams, index: int) -> None:
        self.generator = build_generator(params)
        self.generator.load()
        self.name = f"{params.name}/{index}"  # the same after a restart: the progress bar counts per name
        self.requests = 0
        self.busy_s = 0.0

    async def complete(self, prompt: Prompt) -> Completion:
        started = time.perf_counter()
        async for _, completion in self.generator.stream([prompt]):
            self.requests += 1
            self.busy_s += time.perf_counter() - started
            completion.worker = self.name
            return completion
        raise RuntimeError("the backend returned no completion")

    def stats(self) -> dict[str, Any]:
        return {"name": self.name, "pid": os.getpid(), "requests": self.requests, "busy_s": round(self.busy_s, 3)}


class RayGenerator(Generator):
    """A backend whose requests run on `workers` Ray actors (see the module docstring)."""

    def __init__(self, params: GeneratorParams, workers: int, address: str | None = None) -> None:
        super().__init__(params)
        self.inner = build_generator(params)  # never loaded on the driver: it names the backend and its identity
        self.backend = self.inner.backend  # type: ignore[misc]
        self.workers = workers
        self.address = address
        self.actors: list[Any] = []
        self.worker_stats: list[dict[str, Any]] = []

    def identity(self) -> dict[str, Any]:
        return self.inner.identity()

    def describe(self) -> dict[str, Any]:
        return {**self.inner.describe(), "engine": "ray", "workers": self.workers, "worker_stats": self.worker_stats}

    def load(self) -> None:
        ray = connect(self.address)
        in_flight = max(1, getattr(self.params, "concurrency", 1) // self.workers)  # an API client's share
        actor = ray.remote(max_restarts=-1, max_task_retries=-1)(GeneratorWorker)
        self.actors = [actor.options(max_concurrency=in_flight).remote(self.params, k) for k in range(self.workers)]

    async def stream(self, prompts: Sequence[Prompt]) -> AsyncIterator[tuple[Prompt, Completion]]:
        ray = require("ray", "ray")

        async def one(prompt: Prompt, ref: Any) -> tuple[Prompt, Completion]:
            try:
                return prompt, await ref
            except ray.exceptions.RayError as exc:  # the actor is gone for good: a failed request, sent again next build
                return prompt, Completion("", error=f"ray worker failed: {type(exc).__name__}")

        # Prompts go to actors round-robin by position; each actor queues its share.
        pending = [one(p, self.actors[k % self.workers].complete.remote(p)) for k, p in enumerate(prompts)]
        for finished in asyncio.as_completed(pending):
            yield await finished

    async def aclose(self) -> None:
        ray = require("ray", "ray")
        if not self.actors:
            return
        try:
            self.worker_stats = list(await asyncio.gather(*(a.stats.remote() for a in self.actors)))
        except ray.exceptions.RayError:
            self.worker_stats = []
        for a in self.actors:
            ray.kill(a)
        self.actors = []
