"""In-process GGUF models through llama-cpp-python, one request at a time."""

from __future__ import annotations

import os
import threading
import time
from typing import Any, ClassVar

from factory.errors import GenerationError, ModelSourceError, require
from factory.generators.base import SequentialGenerator
from factory.generators.catalog import ResolvedModel, model_sha256, resolve
from factory.generators.params import LlamaCppParams
from factory.records import Completion, Prompt


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


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
        self._sha256: str | None = None
        self._lock = threading.Lock()

    def load(self) -> None:
        if self.llm_ is not None:
            return
        llama_cpp = require("llama_cpp", "local")
        self.model_ = resolve(self.params.model)
        self._sha256 = self.model_.sha256
        try:
            self.llm_ = llama_cpp.Llama(
                model_path=str(self.model_.path),
                n_ctx=self.params.n_ctx,
                n_threads=self.params.n_threads or _cpu_count(),
                n_gpu_layers=self.params.n_gpu_layers,
                seed=0,
                verbose=False,
            )
        except Exception as exc:  # llama.cpp reports a bad file as a bare ValueError
            raise GenerationError(
                f"llama.cpp could not load {self.model_.name!r} from {self.model_.path}: {exc}"
            ) from exc

    def close(self) -> None:
        llm, self.llm_ = self.llm_, None
        if llm is not None and hasattr(llm, "close"):
            llm.close()

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
                reply = self.llm_.create_chat_completion(**kwargs)
        except Exception as exc:  # one bad request (context overflow, grammar error) is not fatal
            return Completion(
                text="", model=self.model_name, error=f"{type(exc).__name__}: {exc}",
                seconds=time.perf_counter() - start,
            )
        choice = reply["choices"][0]
        usage = reply.get("usage") or {}
        return Completion(
            text=choice["message"].get("content") or "",
            model=self.model_name,
            finish_reason=choice.get("finish_reason"),
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            seconds=time.perf_counter() - start,
        )
