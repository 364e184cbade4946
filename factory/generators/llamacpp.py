"""In-process GGUF models through llama-cpp-python, one request at a time."""

from __future__ import annotations

import os
import threading
import time
from typing import Any, ClassVar

from factory.errors import GenerationError, ModelSourceError, require
from factory.generators import speed
from factory.generators.base import SequentialGenerator
from factory.generators.catalog import ResolvedModel, model_sha256, resolve
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

    With a fixed seed llama.cpp's output is deterministic, so the request cache key (identity +
    messages + seed) identifies a reply. llama-cpp-python keeps the previous request's KV cache and
    re-evaluates only past the shared prefix (the recipe's system prompt); on CPU the reply is the
    same either way (the tests check it), and skipping a 500-token prefix saves ~1.4 s a request
    even on SmolLM2.
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
                    n_ctx=self.params.n_ctx,
                    n_threads=n_threads,
                    n_gpu_layers=self.params.n_gpu_layers,
                    seed=0,
                    verbose=False,
                )
        except Exception as exc:  # llama.cpp reports a bad file as a bare ValueError
            raise GenerationError(
                f"llama.cpp could not load {self.model_.name!r} from {self.model_.path}: {exc}"
            ) from exc

    def close(self) -> None:
        # Ask a running decode to stop at its next token, then wait for it before freeing the model.
        self._abort.set()
        with self._lock:
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
        return {
            **super().identity(),
            "model": self.model_name,
            "sha256": self._sha256,
            "json_mode": self.params.json_mode,
        }

    def describe(self) -> dict[str, Any]:
        # Which llama.cpp path ran on this CPU (not part of identity(): both give the same replies).
        return {**super().describe(), **(self.probe_.describe() if self.probe_ else {})}

    def complete(self, prompt: Prompt) -> Completion:
        if self.llm_ is None:
            self.load()
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
