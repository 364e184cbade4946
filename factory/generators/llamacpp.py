"""In-process GGUF models through llama-cpp-python: one request at a time, or several decoded together."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, ClassVar

from factory.errors import GenerationError, ModelSourceError, require
from factory.generators import speed
from factory.generators.base import SequentialGenerator
from factory.generators.catalog import ResolvedModel, model_sha256, resolve
from factory.generators.llamacpp_batch import BatchEngine, BatchReply, BatchRequest, SamplingSettings
from factory.generators.llamacpp_probe import ProbeResult, choose_path, model_params_for
from factory.generators.params import LlamaCppParams
from factory.records import Completion, Prompt


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class _Closing(Exception):
    """Raised inside a decode to end it because the generator is being closed."""


class LlamaCppGenerator(SequentialGenerator):
    """A packaged or local GGUF model run in this process by llama.cpp.

    With `parallel: 1`, one request at a time through llama-cpp-python's chat API: with a fixed seed
    the output is deterministic, so the request cache key (identity + messages + seed) identifies a
    reply. llama-cpp-python keeps the previous request's KV cache and re-evaluates only past the
    shared prefix; on CPU the reply is the same either way (the tests check it).

    With `parallel: N > 1`, a `BatchEngine` decodes up to N requests together (llamacpp_batch.py).
    Its sampler and its numbers differ from the sequential path's, so its identity says so.
    """

    backend: ClassVar[str] = "llamacpp"
    Params: ClassVar[type[LlamaCppParams]] = LlamaCppParams
    params: LlamaCppParams

    def __init__(self, params: LlamaCppParams) -> None:
        super().__init__(params)
        self.model_: ResolvedModel | None = None
        self.llm_: Any = None
        self.probe_: ProbeResult | None = None
        self._sha256: str | None = None
        # Held for the whole of each request: close() takes it too, so the model is never freed
        # under a running decode (that was a segmentation fault on Ctrl+C).
        self._lock = threading.Lock()
        self._abort = threading.Event()
        self._stop_hook: Any = None
        self._decoded = [0, 0.0]  # completion tokens and seconds of this load's requests, for speed.record
        self.engine_: BatchEngine | None = None
        self._chat: _ChatEncoder | None = None

    def load(self) -> None:
        if self.llm_ is not None:
            return
        llama_cpp = require("llama_cpp", "local")
        self.model_ = resolve(self.params.model)
        self._sha256 = self.model_.sha256
        n_threads = self.params.n_threads or _cpu_count()
        # A path that crashes this CPU is found in a child process, not here (DESIGN §6).
        self.probe_ = choose_path(self.model_.path, self.model_.sha256, n_threads=n_threads)
        self._abort.clear()
        # Built once: the per-token hook that lets close() stop a running decode.
        self._stop_hook = llama_cpp.LogitsProcessorList([self._stop_if_closing])
        try:
            with model_params_for(self.probe_.path):
                self.llm_ = llama_cpp.Llama(
                    model_path=str(self.model_.path),
                    # The batched engine makes its own context: this one only needs to exist.
                    n_ctx=self.params.n_ctx if self.params.parallel == 1 else 256,
                    n_threads=n_threads,
                    n_gpu_layers=self.params.n_gpu_layers,
                    seed=0,
                    verbose=False,
                )
            if self.params.parallel > 1:
                self._chat = _ChatEncoder(self.llm_)
                self.engine_ = BatchEngine(
                    self.llm_.model, n_parallel=self.params.parallel, n_ctx_per_seq=self.params.n_ctx,
                    n_threads=n_threads, sampling=SamplingSettings(self.params.temperature, self.params.top_p))
        except Exception as exc:  # llama.cpp reports a bad file as a bare ValueError
            raise GenerationError(
                f"llama.cpp could not load {self.model_.name!r} from {self.model_.path}: {exc}"
            ) from exc

    def close(self) -> None:
        # Ask a running decode to stop at its next token, then wait for it before freeing the model.
        self._abort.set()
        if self.engine_ is not None:
            self.engine_.stop()
        with self._lock:
            engine, self.engine_ = self.engine_, None
            if engine is not None:
                engine.close()
            llm, self.llm_ = self.llm_, None
            if llm is not None and hasattr(llm, "close"):
                llm.close()
        if self.model_ is not None:
            speed.record(self.model_name, *self._decoded)
        self._decoded = [0, 0.0]

    def _stop_if_closing(self, input_ids: Any, scores: Any) -> Any:
        """A logits processor: the only hook llama.cpp's chat API calls once per generated token."""
        if self._abort.is_set():
            raise _Closing
        return scores

    @property
    def model_name(self) -> str:
        """The catalog name, or the file name of a user's own .gguf (never a machine-specific path)."""
        if self.model_ is not None:
            return self.model_.name
        return os.path.basename(self.params.model)

    def identity(self) -> dict[str, Any]:
        # The file's hash, not its path: the key must not depend on where the cache lives.
        if self._sha256 is None:
            try:
                self._sha256 = model_sha256(self.params.model)
            except ModelSourceError:
                self._sha256 = ""  # load() will raise the real error
        identity = {
            **super().identity(),
            "model": self.model_name,
            "sha256": self._sha256,
            "json_mode": self.params.json_mode,
        }
        if self.params.parallel > 1:
            # Another sampler than the sequential path's, and on CPUs whose kernels take activations
            # four rows at a time (repacked Q4_K, say) numbers that depend on the batch: a reply is
            # only reused by the same engine at the same width.
            identity |= {"engine": "batched", "parallel": self.params.parallel}
        return identity

    def describe(self) -> dict[str, Any]:
        # Which llama.cpp path ran on this CPU: recorded, not part of identity() (a cache moved to another
        # CPU keeps its replies), though the two paths can round differently (docs/generators.md).
        return {**super().describe(), **(self.probe_.describe() if self.probe_ else {})}

    def complete(self, prompt: Prompt) -> Completion:
        if self.llm_ is None:
            self.load()
        if self.params.parallel > 1:
            return self._complete_batched(prompt)
        kwargs: dict[str, Any] = {
            "messages": prompt.messages,
            "temperature": self.params.temperature,
            "top_p": self.params.top_p,
            "max_tokens": self.params.max_tokens,
            "seed": prompt.seed,
        }
        if self.params.json_mode and prompt.schema:
            kwargs["response_format"] = {"type": "json_object", "schema": prompt.schema}
        start = time.perf_counter()
        try:
            with self._lock:
                if self.llm_ is None:  # closed while this request waited for the lock
                    raise _Closing
                kwargs["logits_processor"] = self._stop_hook
                reply = self.llm_.create_chat_completion(**kwargs)
        except _Closing:
            return Completion(text="", model=self.model_name, error="interrupted: the generator was closed",
                              seconds=time.perf_counter() - start)
        except Exception as exc:  # one bad request (context overflow, grammar error) is not fatal
            return Completion(
                text="", model=self.model_name, error=f"{type(exc).__name__}: {exc}",
                seconds=time.perf_counter() - start,
            )
        choice = reply["choices"][0]
        usage = reply.get("usage") or {}
        self._decoded[0] += int(usage.get("completion_tokens", 0))
        self._decoded[1] += time.perf_counter() - start
        return Completion(
            text=choice["message"].get("content") or "",
            model=self.model_name,
            finish_reason=choice.get("finish_reason"),
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            seconds=time.perf_counter() - start,
        )

    async def stream(self, prompts: Sequence[Prompt]) -> AsyncIterator[tuple[Prompt, Completion]]:
        if self.params.parallel == 1:
            async for pair in super().stream(prompts):
                yield pair
            return
        if self.llm_ is None:
            self.load()
        assert self._chat is not None
        requests = self._chat.requests(prompts, self.params)
        loop = asyncio.get_running_loop()
        finished: asyncio.Queue[tuple[BatchRequest, BatchReply] | None] = asyncio.Queue()

        def emit(request: BatchRequest, reply: BatchReply) -> None:
            loop.call_soon_threadsafe(finished.put_nowait, (request, reply))

        def run() -> None:
            start = time.perf_counter()
            try:
                with self._lock:
                    if self.engine_ is not None:  # else closed while this stream waited for the lock
                        self.engine_.run(requests, emit)
            finally:
                self._decoded[1] += time.perf_counter() - start
                loop.call_soon_threadsafe(finished.put_nowait, None)

        worker = asyncio.ensure_future(asyncio.to_thread(run))
        answered: set[int] = set()
        try:
            while (item := await finished.get()) is not None:
                request, reply = item
                answered.add(id(request.tag))
                self._decoded[0] += reply.completion_tokens
                yield request.tag, self._completion(reply)
            await worker
        finally:
            if not worker.done() and self.engine_ is not None:
                self.engine_.stop()  # the consumer went away (Ctrl+C); close() waits for the thread
        for prompt in prompts:  # only when the engine was closed before it started
            if id(prompt) not in answered:
                yield prompt, Completion(text="", model=self.model_name, error="interrupted: the generator was closed")

    def _complete_batched(self, prompt: Prompt) -> Completion:
        """One request through the batched engine (the same numbers as in a stream), blocking."""
        assert self._chat is not None
        replies: list[BatchReply] = []
        start = time.perf_counter()
        with self._lock:
            if self.engine_ is not None:
                self.engine_.run(self._chat.requests([prompt], self.params), lambda _, reply: replies.append(reply))
        if not replies:
            return Completion(text="", model=self.model_name, error="interrupted: the generator was closed")
        self._decoded[0] += replies[0].completion_tokens
        self._decoded[1] += time.perf_counter() - start
        return self._completion(replies[0])

    def _completion(self, reply: BatchReply) -> Completion:
        return Completion(text=reply.text, model=self.model_name, finish_reason=reply.finish_reason,
                          prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens,
                          seconds=reply.seconds, error=reply.error)


class _ChatEncoder:
    """Messages to prompt tokens with the model's own chat template, as the chat API formats them."""

    def __init__(self, llm: Any) -> None:
        from llama_cpp import llama_chat_format

        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise GenerationError("the model has no chat template in its GGUF metadata; use parallel: 1")
        def text(token: int) -> str:
            return llm.detokenize([token], special=True).decode("utf-8", errors="replace") if token != -1 else ""

        eos, bos = llm.token_eos(), llm.token_bos()
        self._llm = llm
        self._format = llama_chat_format.Jinja2ChatFormatter(
            template=template, eos_token=text(eos), bos_token=text(bos), stop_token_ids=[eos])

    def tokens(self, messages: list[dict[str, Any]]) -> tuple[list[int], list[str]]:
        result = self._format(messages=messages)
        stop = result.stop if isinstance(result.stop, list) else [result.stop] if result.stop else []
        return self._llm.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True), stop

    def requests(self, prompts: Sequence[Prompt], params: LlamaCppParams) -> list[BatchRequest]:
        from llama_cpp import llama_grammar

        encoded = [self.tokens(p.messages) for p in prompts]
        # The prompts of a round share their opening (system turn, task, labels): evaluated once.
        shared = len(os.path.commonprefix([t for t, _ in encoded])) if len(encoded) > 1 else 0
        grammars: dict[str, str] = {}
        requests = []
        for prompt, (tokens, stop) in zip(prompts, encoded, strict=True):
            grammar = None
            if params.json_mode and prompt.schema:
                schema = json.dumps(prompt.schema, sort_keys=True)
                if schema not in grammars:
                    grammars[schema] = llama_grammar.json_schema_to_gbnf(schema)
                grammar = grammars[schema]
            requests.append(BatchRequest(tokens=tokens, prefix_len=shared, seed=prompt.seed, grammar=grammar,
                                         max_tokens=params.max_tokens, stop=stop, tag=prompt))
        return requests
