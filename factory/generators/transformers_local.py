"""In-process Hugging Face causal LMs, loaded once and run in batches."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, ClassVar

from factory.errors import GenerationError, ModelSourceError, require
from factory.generators.base import Generator
from factory.generators.catalog import CATALOG, model_sha256, resolve
from factory.generators.params import TransformersParams
from factory.records import Completion, Prompt


def batch_seed(seeds: Sequence[int]) -> int:
    """One torch seed for a batch, derived from its prompts' seeds (order matters, as it does for the output)."""
    digest = hashlib.sha256(",".join(str(s) for s in seeds).encode()).digest()
    return int.from_bytes(digest[:8], "big") & 0x7FFF_FFFF_FFFF_FFFF


class TransformersGenerator(Generator):
    """A transformers causal LM: a Hub id, a local folder, or a catalog name loaded from its GGUF file.

    Prompts run `parallel` at a time through one left-padded `generate()` call. Sampling is seeded
    per batch, so a run is reproducible for the same prompts in the same batches; a prompt's reply
    depends on its batch-mates, which is why the batch size is part of the identity. There is no
    JSON-constrained decoding: the prompt asks for JSON and the recipe parses the text.
    """

    backend: ClassVar[str] = "transformers"
    Params: ClassVar[type[TransformersParams]] = TransformersParams
    params: TransformersParams

    def __init__(self, params: TransformersParams) -> None:
        super().__init__(params)
        self.model_: Any = None
        self.tokenizer_: Any = None
        self.eos_ids_: set[int] = set()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ loading

    def _uses_catalog(self) -> bool:
        """A catalog name or a .gguf path: resolved (and verified) by the catalog, loaded with gguf_file=."""
        model = self.params.model
        return self.params.gguf_file is None and (model in CATALOG or model.lower().endswith(".gguf"))

    def _source(self) -> tuple[str, str | None]:
        """(what from_pretrained gets, the GGUF file name inside it, if any)."""
        if self._uses_catalog():
            path = resolve(self.params.model).path
            return str(path.parent), path.name
        return self.params.model, self.params.gguf_file

    def load(self) -> None:
        if self.model_ is not None:
            return
        transformers = require("transformers", "hf")
        torch = require("torch", "hf")
        source, gguf_file = self._source()
        if gguf_file is not None:
            # GGUF checkpoints are dequantised by these two; name the extra before transformers' own error.
            require("gguf", "hf")
            require("accelerate", "hf")
        kwargs: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {}
        dtype = "auto" if self.params.dtype == "auto" else getattr(torch, self.params.dtype)
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(source, **kwargs)
            model = transformers.AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **kwargs)
        except Exception as exc:
            raise GenerationError(f"transformers could not load {self.params.model!r}: {exc}") from exc
        model.to(self.params.device)
        model.eval()
        tokenizer.padding_side = "left"  # decoder-only: new tokens must follow the prompt directly
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        eos = model.generation_config.eos_token_id
        if eos is None:
            eos = tokenizer.eos_token_id
        self.eos_ids_ = set(eos if isinstance(eos, list) else [eos]) - {None}
        self.tokenizer_, self.model_ = tokenizer, model

    def close(self) -> None:
        self.model_ = self.tokenizer_ = None

    @property
    def model_name(self) -> str:
        model = self.params.model
        if self.params.gguf_file:
            return f"{model}/{self.params.gguf_file}"
        return os.path.basename(model) if model.lower().endswith(".gguf") else model

    def identity(self) -> dict[str, Any]:
        ident: dict[str, Any] = {
            **super().identity(),
            "model": self.model_name,
            "batch_size": self.params.parallel,  # the key keeps its old name: cached replies stay valid
            "dtype": self.params.dtype,
        }
        if self._uses_catalog():
            try:
                ident["sha256"] = model_sha256(self.params.model)
            except ModelSourceError:
                ident["sha256"] = ""  # load() will raise the real error
        return ident

    # ------------------------------------------------------------------ generation

    async def stream(self, prompts: Sequence[Prompt]) -> AsyncIterator[tuple[Prompt, Completion]]:
        if self.model_ is None:
            await asyncio.to_thread(self.load)
        size = self.params.parallel
        for start in range(0, len(prompts), size):
            chunk = list(prompts[start:start + size])
            for pair in await asyncio.to_thread(self.generate_batch, chunk):
                yield pair

    def generate_batch(self, prompts: Sequence[Prompt]) -> list[tuple[Prompt, Completion]]:
        """Run one batch to completion, blocking. A failure becomes an error Completion per prompt."""
        done: dict[int, Completion] = {}
        texts: list[str] = []
        ok: list[int] = []
        for i, prompt in enumerate(prompts):
            try:
                texts.append(self.tokenizer_.apply_chat_template(
                    prompt.messages, tokenize=False, add_generation_prompt=True,
                ))
                ok.append(i)
            except Exception as exc:  # e.g. a template that rejects a system message
                done[i] = Completion(text="", model=self.model_name, error=f"chat template: {exc}")
        if ok:
            start = time.perf_counter()
            try:
                with self._lock:
                    rows = self._generate([prompts[i] for i in ok], texts)
            except Exception as exc:  # noqa: BLE001 - out of memory and the like fail the batch, not the run
                seconds = time.perf_counter() - start
                error = f"{type(exc).__name__}: {exc}"
                rows = [Completion(text="", model=self.model_name, error=error, seconds=seconds / len(ok))
                        for _ in ok]
            done.update(zip(ok, rows))
        return [(prompt, done[i]) for i, prompt in enumerate(prompts)]

    def _generate(self, prompts: Sequence[Prompt], texts: list[str]) -> list[Completion]:
        torch = require("torch", "hf")
        start = time.perf_counter()
        enc = self.tokenizer_(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        enc = {k: v.to(self.params.device) for k, v in enc.items()}
        sample = self.params.temperature > 0
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.params.max_tokens,
            "do_sample": sample,
            "pad_token_id": self.tokenizer_.pad_token_id,
        }
        if sample:
            kwargs.update(temperature=self.params.temperature, top_p=self.params.top_p)
        else:
            # Greedy: drop the sampling knobs the checkpoint's generation_config may carry.
            kwargs.update(temperature=None, top_p=None, top_k=None)
        torch.manual_seed(batch_seed([p.seed for p in prompts]))
        with torch.inference_mode():
            out = self.model_.generate(**enc, **kwargs)
        seconds = (time.perf_counter() - start) / len(prompts)
        width = enc["input_ids"].shape[1]
        results = []
        for row, mask in zip(out, enc["attention_mask"]):
            new = row[width:].tolist()
            cut = next((j for j, tok in enumerate(new) if tok in self.eos_ids_), None)
            if cut is None:
                # Rows are padded only after their EOS, so no EOS means the budget ran out.
                tokens = new
                finish = "length" if len(new) >= self.params.max_tokens else "stop"
            else:
                tokens, finish = new[:cut], "stop"
            results.append(Completion(
                text=self.tokenizer_.decode(tokens, skip_special_tokens=True).strip(),
                model=self.model_name,
                finish_reason=finish,
                prompt_tokens=int(mask.sum()),
                completion_tokens=len(tokens) + (cut is not None),
                seconds=seconds,
            ))
        return results

