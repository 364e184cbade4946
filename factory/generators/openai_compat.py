"""The `openai` backend: any OpenAI-compatible chat-completions server, asynchronously."""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import urlsplit

from factory.errors import GenerationError
from factory.generators.base import Generator
from factory.generators.failures import BUDGET
from factory.generators.params import OpenAIParams
from factory.generators.pricing import Price, price_of
from factory.generators.ratelimit import RateLimiter, parse_reset
from factory.generators.tokens import PromptCounter
from factory.records import Completion, Prompt

_JSON_MODES = ("json_schema", "json_object", "none")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def endpoint(base_url: str) -> str:
    """The server a base_url names, as the request cache keys it: host, port and path, never credentials.

    Spellings of one server give one endpoint (every loopback name is 127.0.0.1, a scheme's default port
    and a trailing slash are dropped), so that rewriting the URL does not make cached replies unusable."""
    parts = urlsplit(base_url.strip())
    host = (parts.hostname or "").lower()
    if host in ("localhost", "ip6-localhost", "::1") or host.startswith("127."):
        host = "127.0.0.1"
    port = parts.port if parts.port != _DEFAULT_PORTS.get(parts.scheme.lower()) else None
    return f"{host}{':' + str(port) if port else ''}{parts.path.rstrip('/')}"


class OpenAIGenerator(Generator):
    """Async client with rate limits, a money meter, per-request timeout and the only retry layer.

    The SDK's own retries are off (max_retries=0) so that attempts are bounded in one place, and
    `Retry-After` from a 429 or 503 is honoured. Before a request is sent, the build's money meter
    reserves its worst case and the rate limiter (generators/ratelimit.py) waits for the account's
    allowance. A request that still fails becomes a Completion with `error` set: a rejected row, not
    an exception. `mode: batch` sends the same requests through the Batch API (openai_batch.py).
    """

    backend = "openai"
    Params = OpenAIParams
    params: OpenAIParams

    def __init__(self, params: OpenAIParams) -> None:
        super().__init__(params)
        self._client: Any = None
        self._json_mode = params.json_mode
        self.price: Price | None = price_of(params)
        self.counter = PromptCounter(params.tokenizer)
        self.limiter = RateLimiter(params.concurrency, params.rpm, params.tpm)

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "endpoint": endpoint(self.params.base_url), "extra_body": self.params.extra_body}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "mode": self.params.mode,
                "price": self.price.describe() if self.price else None, "rate_limits": self.limiter.describe()}

    def load(self) -> None:
        import openai

        self.counter.check()

        key = "not-needed"
        if self.params.api_key_env:
            key = os.environ.get(self.params.api_key_env, "")
            if not key:
                raise GenerationError(
                    f"generator '{self.name}': the environment variable {self.params.api_key_env} is not set "
                    "(it must hold the API key; set api_key_env: null for servers without keys)"
                )
        self._client = openai.AsyncOpenAI(
            base_url=self.params.base_url, api_key=key, max_retries=0, timeout=self.params.timeout
        )

    async def aclose(self) -> None:
        # The HTTP pool belongs to the event loop that opened it, so it is closed inside that loop.
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

    async def stream(self, prompts: Sequence[Prompt]) -> AsyncIterator[tuple[Prompt, Completion]]:
        if self._client is None:
            self.load()
        if self.params.mode == "batch":
            from factory.generators.openai_batch import BatchRunner

            async for done in BatchRunner(self, self._client).stream(prompts):
                yield done
            return

        async def run(prompt: Prompt) -> tuple[Prompt, Completion]:
            return prompt, await self.complete(prompt)

        tasks = [asyncio.ensure_future(run(p)) for p in prompts]
        try:
            for finished in asyncio.as_completed(tasks):
                yield await finished
        finally:
            for task in tasks:
                task.cancel()

    def response_format(self, prompt: Prompt) -> dict[str, Any] | None:
        """How a batch asks for JSON: the mode the recipe sets (auto: json_schema, which OpenAI's batches take)."""
        mode = self.params.json_mode
        return self._response_format("json_schema" if mode == "auto" else mode, prompt)

    def _response_format(self, mode: str, prompt: Prompt) -> dict[str, Any] | None:
        if prompt.schema is None or mode == "none":
            return None
        if mode == "json_object":
            # llama.cpp's server reads `schema` here and constrains the output; others ignore it.
            return {"type": "json_object", "schema": prompt.schema}
        return {"type": "json_schema", "json_schema": {"name": "reply", "schema": prompt.schema}}

    def worst_cost(self, prompt: Prompt, batch: bool = False) -> float | None:
        """The most a request can be charged: its prompt's token bound + max_tokens, at its price."""
        if self.price is None:
            return None
        return self.price.cost(self.counter.upper_bound(prompt.messages), self.params.max_tokens, batch)

    async def admit(self, prompt: Prompt, batch: bool = False) -> tuple[float | None, str | None]:
        """Reserve a request's worst case on the build's meter: (the reservation, None) or (None, why not)."""
        worst = self.worst_cost(prompt, batch)
        meter = self.run.meter
        if meter is None or worst is None:
            return None, None
        if not await meter.admit(worst):
            return None, (f"{BUDGET}: this request could cost up to ${worst:.6f}; ${meter.total_usd:.6f} is spent and "
                          f"${meter.reserved_usd:.6f} reserved of the budget's ${meter.limit_usd:.2f}")
        return worst, None

    def charge(self, completion: Completion, batch: bool = False) -> Completion:
        """Price a finished reply from its reported usage."""
        if self.price is not None and completion.error is None:
            completion.cost_usd = self.price.cost(completion.prompt_tokens, completion.completion_tokens, batch)
        return completion

    async def complete(self, prompt: Prompt) -> Completion:
        """One request, admitted by the budget and the rate limits, with bounded retries. Never raises for
        server or network faults."""
        # A slot in the concurrency window first, then the money: only requests about to be sent hold a reservation.
        await self.limiter.enter()
        try:
            if self.halted:
                return self._failed(self.halted, time.perf_counter())
            reserved, refused = await self.admit(prompt)
            if refused:
                return self._failed(refused, time.perf_counter())
            completion = await self._attempts(prompt)
        finally:
            self.limiter.leave()
        if reserved is not None and self.run.meter is not None:
            if completion.error is None and not (completion.prompt_tokens or completion.completion_tokens):
                completion.cost_usd = reserved  # no usage reported: charged its worst case, never too little
            self.run.meter.settle(reserved, completion.cost_usd or 0.0)
        return completion

    async def _attempts(self, prompt: Prompt) -> Completion:
        import openai

        p = self.params
        started = time.perf_counter()
        # What the provider counts against TPM at admission: its estimate of the prompt, plus max_tokens.
        tokens = self.counter.count(prompt.messages) + p.max_tokens
        last_error = ""
        attempt = 0
        while attempt < p.max_attempts:
            if self.halted:  # another request found the credit spent while this one waited
                return self._failed(self.halted, started)
            mode = self._json_mode
            fmt = self._response_format("json_schema" if mode == "auto" else mode, prompt)
            kwargs: dict[str, Any] = {
                "model": p.model, "messages": prompt.messages, "temperature": p.temperature,
                "top_p": p.top_p, "max_tokens": p.max_tokens, "seed": prompt.seed,
                **({"response_format": fmt} if fmt else {}), **({"extra_body": p.extra_body} if p.extra_body else {}),
            }
            attempt += 1
            await self.limiter.take(tokens)
            try:
                raw = await self._client.chat.completions.with_raw_response.create(**kwargs)
                self.limiter.observe(raw.headers)
                reply = raw.parse()
            except openai.APIStatusError as exc:
                self.limiter.observe(exc.response.headers)
                if fmt is not None and p.json_mode == "auto" and _refuses_json_mode(exc):
                    # This server refuses this way of asking for JSON: step down (json_schema ->
                    # json_object -> plain text) without spending an attempt.
                    self._step_down(mode)
                    attempt -= 1
                    continue
                last_error = f"http_{exc.status_code}"
                if getattr(exc, "code", None) == "insufficient_quota":  # a 429 that waiting does not cure
                    self.halted = f"{last_error}: insufficient_quota: {_short(exc)}"
                    return self._failed(self.halted, started)
                if exc.status_code not in (408, 409, 429) and exc.status_code < 500:
                    return self._failed(f"{last_error}: {_short(exc)}", started)
                retry_after = exc.response.headers.get("retry-after")
                if exc.status_code == 429:
                    self.limiter.limited(parse_reset(retry_after) if retry_after else None)
                    if retry_after:  # the limiter holds every request until then: no second wait here
                        continue
                await self._backoff(attempt, retry_after)
            except openai.APITimeoutError:
                last_error = "timeout"
                await self._backoff(attempt, None)
            except openai.APIConnectionError as exc:
                last_error = f"connection_error: {_short(exc)}"
                await self._backoff(attempt, None)
            except (openai.APIError, ValueError, TypeError, AttributeError) as exc:
                # A 200 whose body is not a chat completion: retrying the same request may help.
                last_error = f"bad_response: {_short(exc)}"
                await self._backoff(attempt, None)
            else:
                self.limiter.succeeded()
                if p.json_mode == "auto" and mode == "auto":
                    self._json_mode = "json_schema"  # accepted: stop probing
                return self.charge(self.completion_of(reply, started))
        return self._failed(f"{last_error} (gave up after {p.max_attempts} attempts)", started)

    def _step_down(self, mode: str) -> None:
        if mode != self._json_mode:
            return  # a concurrent request already stepped down from this mode
        current = "json_schema" if mode == "auto" else mode
        self._json_mode = _JSON_MODES[min(_JSON_MODES.index(current) + 1, len(_JSON_MODES) - 1)]  # type: ignore[assignment]

    @staticmethod
    def _failed(error: str, started: float) -> Completion:
        return Completion(text="", error=error, seconds=time.perf_counter() - started)

    def completion_of(self, reply: Any, started: float) -> Completion:
        choices = getattr(reply, "choices", None) or []
        if not choices:
            return self._failed("bad_response: no choices in the reply", started)
        choice = choices[0]
        message = getattr(choice, "message", None)
        usage = getattr(reply, "usage", None)
        return Completion(
            text=(getattr(message, "content", None) or "") if message is not None else "",
            model=getattr(reply, "model", "") or "",
            finish_reason=getattr(choice, "finish_reason", None),
            prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
            completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
            seconds=time.perf_counter() - started,
        )

    async def _backoff(self, attempt: int, retry_after: str | None) -> None:
        if attempt >= self.params.max_attempts:
            return
        delay = self.params.backoff * 2 ** (attempt - 1) * (0.5 + random.random())  # noqa: S311 - jitter
        if retry_after:
            try:
                delay = max(float(retry_after), 0.0)
            except ValueError:
                pass
        await asyncio.sleep(min(delay, 120.0))


def _refuses_json_mode(exc: Exception) -> bool:
    """A 400/422 to a request with response_format, or any error that names it (llama.cpp's server
    answers an unsupported response_format with a 500)."""
    status = getattr(exc, "status_code", 0)
    return status in (400, 422) or "response_format" in str(exc)


def _short(exc: BaseException) -> str:
    return str(exc).replace("\n", " ")[:200]
