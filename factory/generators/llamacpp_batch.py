"""Continuous batching on llama-cpp-python's low-level API: several sequences per llama_decode.

On a CPU, decoding one sequence reads every weight from memory for each token and leaves the
arithmetic units partly idle; reading a prompt (many tokens per pass) runs 3-9x faster per token,
depending on the machine.
`BatchEngine` keeps up to `n_parallel` sequences in one llama.cpp context and decodes one token of
each in the same pass; a sequence that finishes frees its slot for the next request at once.

Built only on the bindings llama-cpp-python maintains (llama_batch, llama_decode with several
sequence ids, llama_memory_seq_cp/rm, one sampler chain per sequence), not on a fork or a server
binary: the install stays one pip command and a crash in a request stays a Python exception.

What a reply depends on. Each sequence has its own KV stream (kv_unified off), so its attention
never sees another sequence's cells, its own sampler chain and its own seed; the opening its prompt
shares with the others of its call is evaluated once and copied into its slot. The schedule depends
only on the requests and the replies, so the same requests give the same replies. Whether a reply
also stays the same beside other requests depends on llama.cpp's CPU kernels: with plain ones
(SmolLM2's Q4_1) it does, to the bit, which the tests check; kernels that take activations four rows
at a time (repacked Q4_K) round differently with the batch and the prompt's split. The generator's
identity names the engine and its width for that reason.

Grammar: applying a JSON-schema grammar to all ~150k candidate tokens at every step costs more than
the decode on a small model. Like llama.cpp's own common_sampler, each step samples without the
grammar first, checks that one token against it, and runs the full grammar pass only when the token
is rejected (`lazy_grammar`; the benchmark measures both).
"""

from __future__ import annotations

import ctypes
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# A prefix shorter than this is cheaper to evaluate than to copy (a stream copy moves the whole slot).
MIN_SHARED_PREFIX = 32


@dataclass(frozen=True)
class SamplingSettings:
    """The sampler chain every sequence gets (llama-cpp-python's create_chat_completion defaults)."""

    temperature: float
    top_p: float
    top_k: int = 40
    min_p: float = 0.05


@dataclass
class BatchRequest:
    """One prompt, already tokenized; its first `prefix_len` tokens are shared with other requests."""

    tokens: list[int]
    prefix_len: int
    seed: int
    max_tokens: int
    grammar: str | None = None
    stop: Sequence[str] = ()
    tag: Any = None  # the caller's handle, returned with the reply
    stop_bytes: tuple[bytes, ...] = field(init=False)  # what the text is searched for, encoded once

    def __post_init__(self) -> None:
        self.stop_bytes = tuple(stop.encode("utf-8") for stop in self.stop if stop)


@dataclass
class BatchReply:
    """What one request produced, or why it failed (`error`)."""

    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    error: str | None = None


@dataclass
class EngineStats:
    """Counters for the benchmark and the tests: tokens, prefix reuse, the grammar's full passes."""

    generated: int = 0
    prefix_reused: int = 0
    grammar_checks: int = 0
    grammar_full_passes: int = 0


@dataclass
class _Slot:
    seq: int
    request: BatchRequest
    started: float
    chain: Any
    grammar: Any
    n_past: int = 0
    last: int = -1
    text: bytearray = field(default_factory=bytearray)
    generated: int = 0
    finish: str | None = None


class EngineClosed(Exception):
    """The engine was asked to stop: the requests still running end as interrupted."""


class BatchEngine:
    """Up to `n_parallel` sequences of one llama.cpp model decoded together (see the module doc).

    Not thread-safe: one thread calls `run()` at a time; `stop()` may be called from any thread.
    """

    def __init__(self, model: Any, *, n_parallel: int, n_ctx_per_seq: int, n_threads: int,
                 sampling: SamplingSettings, lazy_grammar: bool = True, n_batch: int = 512) -> None:
        import llama_cpp

        self._ll = llama_cpp
        self.n_parallel = n_parallel
        self.sampling = sampling
        self.lazy_grammar = lazy_grammar
        self.n_batch = n_batch
        self.n_ctx_per_seq = n_ctx_per_seq
        self.stats = EngineStats()
        self._stopping = threading.Event()
        self._vocab = llama_cpp.llama_model_get_vocab(model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self._vocab)
        params = llama_cpp.llama_context_default_params()
        # One more sequence than slots: it holds the shared prefix, copied into each slot.
        self._prefix_seq = n_parallel
        params.n_seq_max = n_parallel + 1
        params.n_ctx = n_ctx_per_seq * (n_parallel + 1)  # split evenly between the streams
        params.kv_unified = False  # a stream per sequence: no attention over other requests' cells
        params.n_batch = params.n_ubatch = n_batch
        params.n_threads = params.n_threads_batch = n_threads
        params.no_perf = True
        # llama.cpp's CPU flash attention gives a query different numbers when other sequences share
        # its batch (measured: logits off by up to 1.0); the plain path gives the same bits.
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        self._ctx = llama_cpp.llama_init_from_model(model, params)
        if not self._ctx:
            raise RuntimeError("llama.cpp could not create a batched context (out of memory?)")
        self._mem = llama_cpp.llama_get_memory(self._ctx)
        self._batch = llama_cpp.llama_batch_init(max(n_batch, n_parallel), 0, 1)
        # Checked by llama.cpp between graph computations: stop() ends a long prompt evaluation too.
        self._abort_cb = llama_cpp.ggml_abort_callback(lambda _data: self._stopping.is_set())
        llama_cpp.llama_set_abort_callback(self._ctx, self._abort_cb, None)
        self._prefix: list[int] = []
        # The full candidate array for the grammar's slow path, allocated once.
        self._candidates = np.zeros(self.n_vocab, dtype=np.dtype(
            [("id", np.intc), ("logit", np.single), ("p", np.single)], align=True))
        self._token_ids = np.arange(self.n_vocab, dtype=np.intc)
        self._one = (llama_cpp.llama_token_data * 1)()

    # -- lifecycle ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask a running `run()` to end at its next step (thread-safe)."""
        self._stopping.set()

    def close(self) -> None:
        """Free the context and the batch (the caller owns the model)."""
        if self._ctx is not None:
            self._ll.llama_batch_free(self._batch)
            self._ll.llama_free(self._ctx)
            self._ctx = None

    # -- the scheduler ------------------------------------------------------------------------

    def run(self, requests: Iterable[BatchRequest], emit: Callable[[BatchRequest, BatchReply], None]) -> None:
        """Answer `requests` in order of admission, `n_parallel` at a time; `emit` each reply as it finishes.

        The schedule depends only on the requests and the replies, never on timing, so the same
        requests give the same batches. After `stop()` (or a failed decode) every unfinished request
        is emitted with an error, so each request gets exactly one reply.
        """
        waiting = deque(requests)
        slots: list[_Slot | None] = [None] * self.n_parallel
        try:
            while waiting or any(slots):
                for s in range(self.n_parallel):
                    while slots[s] is None and waiting:
                        request = waiting.popleft()
                        try:
                            slots[s] = self._admit(s, request, emit)
                        except BaseException:
                            waiting.appendleft(request)  # stopped during its prompt: it still gets its reply
                            raise
                active = [slot for slot in slots if slot is not None]
                if not active:
                    continue
                self._decode([(slot.last, slot.n_past, slot.seq) for slot in active], all_logits=True)
                for index, slot in enumerate(active):
                    slot.n_past += 1
                    if self._advance(slot, index):
                        self._finish(slot, emit)
                        slots[slot.seq] = None
        except EngineClosed:
            self._abandon(slots, waiting, emit, "interrupted: the generator was closed")
        except Exception as exc:  # llama_decode failed: every unfinished request fails, none is lost silently
            self._abandon(slots, waiting, emit, f"{type(exc).__name__}: {exc}")

    def _abandon(self, slots: list[_Slot | None], waiting: Iterable[BatchRequest],
                 emit: Callable[[BatchRequest, BatchReply], None], error: str) -> None:
        now = time.perf_counter()
        for slot in slots:
            if slot is not None:
                self._release(slot)
                emit(slot.request, BatchReply("", None, len(slot.request.tokens), 0, now - slot.started, error))
        for request in waiting:
            emit(request, BatchReply("", None, len(request.tokens), 0, 0.0, error))

    def _admit(self, seq: int, request: BatchRequest, emit: Callable[[BatchRequest, BatchReply], None]) -> _Slot | None:
        """Evaluate a request's prompt in slot `seq` and sample its first token; None if it already ended."""
        started = time.perf_counter()
        tokens = request.tokens
        if len(tokens) + 1 > self.n_ctx_per_seq:
            emit(request, BatchReply("", None, len(tokens), 0, 0.0,
                                     f"ValueError: the prompt has {len(tokens)} tokens; the context holds {self.n_ctx_per_seq}"))
            return None
        self._ll.llama_memory_seq_rm(self._mem, seq, -1, -1)
        split = min(request.prefix_len, len(tokens) - 1)  # at least one token after it, for the logits
        start = 0
        if split >= MIN_SHARED_PREFIX:
            prefix = tokens[:split]
            if prefix != self._prefix:
                self._ll.llama_memory_seq_rm(self._mem, self._prefix_seq, -1, -1)
                self._prefix = []  # until the new one is whole: an interrupted evaluation leaves none
                self._evaluate(prefix, 0, self._prefix_seq)
                self._prefix = prefix
            else:
                self.stats.prefix_reused += 1
            # A copy between streams moves the whole stream: the prefix sequence holds nothing else.
            self._ll.llama_memory_seq_cp(self._mem, self._prefix_seq, seq, -1, -1)
            start = split
        self._evaluate(tokens[start:], start, seq, last_logits=True)
        slot = _Slot(seq=seq, request=request, started=started, n_past=len(tokens),
                     chain=self._chain(request.seed), grammar=self._grammar(request.grammar))
        if slot.grammar is None and request.grammar:
            self._release(slot)
            emit(request, BatchReply("", None, len(tokens), 0, time.perf_counter() - started,
                                     "ValueError: llama.cpp could not parse the JSON-schema grammar"))
            return None
        if self._advance(slot, -1):
            self._finish(slot, emit)
            return None
        return slot

    def _evaluate(self, tokens: list[int], pos: int, seq: int, last_logits: bool = False) -> None:
        """Feed `tokens` of one sequence from position `pos`, `n_batch` at a time."""
        for start in range(0, len(tokens), self.n_batch):
            chunk = tokens[start:start + self.n_batch]
            last = last_logits and start + len(chunk) == len(tokens)
            self._decode([(t, pos + start + i, seq) for i, t in enumerate(chunk)], all_logits=False, last=last)

    def _decode(self, items: list[tuple[int, int, int]], *, all_logits: bool, last: bool = False) -> None:
        if self._stopping.is_set():
            raise EngineClosed
        batch = self._batch
        batch.n_tokens = len(items)
        for i, (token, pos, seq) in enumerate(items):
            batch.token[i] = token
            batch.pos[i] = pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq
            batch.logits[i] = 1 if all_logits or (last and i == len(items) - 1) else 0
        code = self._ll.llama_decode(self._ctx, batch)
        if code != 0:
            if self._stopping.is_set():  # the abort callback ended it
                raise EngineClosed
            raise RuntimeError(f"llama_decode failed with status {code}")

    # -- sampling -----------------------------------------------------------------------------

    def _chain(self, seed: int) -> Any:
        ll, s = self._ll, self.sampling
        chain = ll.llama_sampler_chain_init(ll.llama_sampler_chain_default_params())
        if s.temperature <= 0:
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_greedy())
            return chain
        ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_top_k(s.top_k))
        ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_top_p(s.top_p, 1))
        ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_min_p(s.min_p, 1))
        ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_temp(s.temperature))
        ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_dist(seed & 0xFFFFFFFF))
        return chain

    def _grammar(self, gbnf: str | None) -> Any:
        if not gbnf:
            return None
        grammar = self._ll.llama_sampler_init_grammar(self._vocab, gbnf.encode(), b"root")
        return grammar or None

    def _sample(self, slot: _Slot, index: int) -> int:
        """The next token of `slot` from output `index` of the last decode (-1: the last output)."""
        ll = self._ll
        if slot.grammar is not None and not self.lazy_grammar:
            return self._sample_constrained(slot, index)
        token = ll.llama_sampler_sample(slot.chain, self._ctx, index)
        if slot.grammar is None:
            return token
        # Is the unconstrained choice allowed? One candidate through the grammar costs nothing.
        self.stats.grammar_checks += 1
        logits = ll.llama_get_logits_ith(self._ctx, index)
        self._one[0].id, self._one[0].logit, self._one[0].p = token, logits[token], 0.0
        one = ll.llama_token_data_array(data=self._one, size=1, selected=-1, sorted=False)
        ll.llama_sampler_apply(slot.grammar, ctypes.byref(one))
        if self._one[0].logit == -math.inf:
            return self._sample_constrained(slot, index)
        ll.llama_sampler_accept(slot.grammar, token)
        return token

    def _sample_constrained(self, slot: _Slot, index: int) -> int:
        """The grammar over every candidate, then the chain: the slow, always-valid path."""
        ll = self._ll
        self.stats.grammar_full_passes += 1
        logits = ll.llama_get_logits_ith(self._ctx, index)
        candidates = self._candidates
        candidates["id"] = self._token_ids  # the samplers sort the array in place: every field is reset
        candidates["logit"] = np.ctypeslib.as_array(logits, shape=(self.n_vocab,))
        candidates["p"] = 0.0
        array = ll.llama_token_data_array(
            data=candidates.ctypes.data_as(ll.llama_token_data_p), size=self.n_vocab, selected=-1, sorted=False)
        ll.llama_sampler_apply(slot.grammar, ctypes.byref(array))
        ll.llama_sampler_apply(slot.chain, ctypes.byref(array))
        # The samplers may have re-pointed `data` at their own sorted copy: read the choice from the struct.
        token = int(array.data[array.selected].id)
        ll.llama_sampler_accept(slot.chain, token)
        ll.llama_sampler_accept(slot.grammar, token)
        return token

    def _advance(self, slot: _Slot, index: int) -> bool:
        """Sample the slot's next token; True when its reply is complete."""
        token = self._sample(slot, index)
        request = slot.request
        if self._ll.llama_vocab_is_eog(self._vocab, token):
            slot.finish = "stop"
            return True
        piece = self._piece(token)
        slot.text += piece
        slot.generated += 1
        self.stats.generated += 1
        slot.last = token
        if request.stop_bytes:
            # Only the end can hold a stop string that was not there before this piece.
            tail = slot.text[-(len(piece) + max(len(stop) for stop in request.stop_bytes)):]
            if any(stop in tail for stop in request.stop_bytes):
                slot.finish = "stop"
                return True
        if slot.generated >= request.max_tokens or slot.n_past + 1 >= self.n_ctx_per_seq:
            slot.finish = "length"
            return True
        return False

    def _piece(self, token: int) -> bytes:
        buffer = ctypes.create_string_buffer(64)
        n = self._ll.llama_token_to_piece(self._vocab, token, buffer, len(buffer), 0, False)
        if n < 0:
            buffer = ctypes.create_string_buffer(-n)
            n = self._ll.llama_token_to_piece(self._vocab, token, buffer, len(buffer), 0, False)
        return buffer.raw[:n]

    # -- endings ------------------------------------------------------------------------------

    def _finish(self, slot: _Slot, emit: Callable[[BatchRequest, BatchReply], None]) -> None:
        text = bytes(slot.text)
        for stop in slot.request.stop_bytes:
            text = text.split(stop, 1)[0]
        self._release(slot)
        emit(slot.request, BatchReply(text.decode("utf-8", errors="replace"), slot.finish, len(slot.request.tokens),
                                      slot.generated, time.perf_counter() - slot.started))

    def _release(self, slot: _Slot) -> None:
        self._ll.llama_sampler_free(slot.chain)
        if slot.grammar is not None:
            self._ll.llama_sampler_free(slot.grammar)
        self._ll.llama_memory_seq_rm(self._mem, slot.seq, -1, -1)
