"""The generator contract: every backend turns Prompts into Completions."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from factory.records import Completion, Prompt

if TYPE_CHECKING:
    from factory.generators.meter import MoneyMeter


class GeneratorParams(BaseModel):
    """Fields every backend shares. Each backend subclasses this with `backend: Literal[...]`."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("", description="Name of this generator within the recipe (defaults to the backend).")
    model: str = Field(description="Model name, catalog name or path, depending on the backend.")
    weight: float = Field(1.0, ge=0, description="Share of the prompts this generator gets, relative to the others.")
    temperature: float = Field(0.9, ge=0, le=2, description="Sampling temperature.")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling mass.")
    max_tokens: int = Field(256, ge=1, le=32768, description="Most tokens per reply; a reply cut here is rejected as truncated.")


@dataclass
class RunContext:
    """What a build lends its generators: the money meter, and a folder of the run directory for state
    that must outlive the process (the Batch API's submitted jobs)."""

    meter: MoneyMeter | None = None
    state_dir: Path | None = None
    no_wait: bool = False  # the Batch API: submit, then stop instead of waiting for the results


class Generator(ABC):
    """A backend that produces one Completion per Prompt.

    `__init__` only stores parameters; clients and weights load in `load()`. A reply the model got
    wrong is still a Completion; only a request that finally failed carries `error`.
    """

    backend: ClassVar[str]
    Params: ClassVar[type[GeneratorParams]]

    def __init__(self, params: GeneratorParams) -> None:
        self.params = params
        self.run = RunContext()
        # Set when a reply means every further request would fail the same way (spent credit): the build
        # stops at once, and this generator sends nothing more.
        self.halted: str | None = None

    def attach(self, run: RunContext) -> None:
        """Lend the build's meter and state folder; called before `load()`."""
        self.run = run

    @property
    def name(self) -> str:
        return self.params.name or self.backend

    def load(self) -> None:
        """Load clients or weights. Called once, before the first request."""

    def close(self) -> None:
        """Release what `load()` took."""

    async def aclose(self) -> None:
        """Release resources from inside the event loop that used them (async clients override this)."""
        self.close()

    def identity(self) -> dict[str, Any]:
        """What makes a reply differ between generators: part of the request cache key.

        Never includes a secret. The endpoint host is included for servers, not the API key.
        """
        return {
            "backend": self.backend,
            "model": self.params.model,
            "temperature": self.params.temperature,
            "top_p": self.params.top_p,
            "max_tokens": self.params.max_tokens,
        }

    def describe(self) -> dict[str, Any]:
        """Settings for the manifest and the dataset card (no secrets)."""
        return {"name": self.name, **self.identity()}

    @abstractmethod
    async def stream(self, prompts: Sequence[Prompt]) -> AsyncIterator[tuple[Prompt, Completion]]:
        """Yield (prompt, completion) pairs as each finishes, in any order."""
        raise NotImplementedError
        yield  # pragma: no cover

    async def generate(self, prompts: Sequence[Prompt]) -> list[Completion]:
        """All completions, in the order of `prompts`."""
        done: dict[int, Completion] = {}
        position = {id(p): i for i, p in enumerate(prompts)}
        async for prompt, completion in self.stream(prompts):
            done[position[id(prompt)]] = completion
        return [done[i] for i in range(len(prompts))]


class SequentialGenerator(Generator):
    """A backend that runs one blocking request at a time in a worker thread (in-process models)."""

    @abstractmethod
    def complete(self, prompt: Prompt) -> Completion:
        """Run one prompt to completion, blocking."""

    async def stream(self, prompts: Sequence[Prompt]) -> AsyncIterator[tuple[Prompt, Completion]]:
        for prompt in prompts:
            yield prompt, await asyncio.to_thread(self.complete, prompt)
