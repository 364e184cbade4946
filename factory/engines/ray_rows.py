"""Per-row stages and embeddings on Ray Data: `map_batches` over blocks of rows, results in row order."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from factory.embeddings import Embedder
from factory.filters.base import Filter, FilterContext, FilterResult
from factory.records import Prompt, Record, Rejected

if TYPE_CHECKING:
    from factory.engines.ray_engine import RayEngine


def _apply_rowwise(batch: dict[str, np.ndarray], stage: Any) -> dict[str, np.ndarray]:
    import ray

    records = [pickle.loads(blob) for blob in batch["record"]]
    result = ray.get(stage).apply(records)
    if result.stats:
        raise RuntimeError(f"{result.stats!r}: a rowwise stage must not report whole-batch stats")
    kept = {r.id: pickle.dumps(r) for r in result.kept}  # a stage may return annotated copies
    dropped = {r.id: pickle.dumps(r) for r in result.dropped}
    ids = [r.id for r in records]
    return {"pos": batch["pos"], "kept": np.array([kept.get(i, b"") for i in ids], dtype=object),
            "dropped": np.array([dropped.get(i, b"") for i in ids], dtype=object)}


class RowsOnRay(Filter):
    """A stage that decides each row on its own (`Filter.rowwise`), applied to blocks of rows on Ray Data.

    The fitted stage travels to the workers once through the object store, with a context that holds
    only the seed and labels (a rowwise stage needs no more); rows come back in their input order."""

    def __init__(self, inner: Filter, engine: RayEngine) -> None:
        super().__init__(inner.params)
        self.inner = inner
        self.type = inner.type
        self.engine = engine

    def fit(self, context: FilterContext) -> Self:
        super().fit(context)
        self.inner.fit(context)
        return self

    def request(self, record: Record) -> Prompt | None:
        return self.inner.request(record)

    def apply(self, records: Sequence[Record]) -> FilterResult:
        if not self.engine.distributes(len(records)):
            return self.inner.apply(records)
        shipped = copy.copy(self.inner)
        shipped.context_ = FilterContext(seed=self.context.seed, labels=self.context.labels,
                                        answer_fields=self.context.answer_fields)
        with self.engine.timed(self.type, len(records)):
            rows = self.engine.rows({"record": [pickle.dumps(r) for r in records]})
            out = rows.map_batches(_apply_rowwise, fn_kwargs={"stage": self.engine.ray.put(shipped)}, batch_format="numpy")
            decided: dict[int, tuple[bytes, bytes]] = {}
            for batch in out.iter_batches(batch_format="numpy", batch_size=None):
                decided.update(zip(batch["pos"].tolist(), zip(batch["kept"], batch["dropped"])))
        kept: list[Record] = []
        dropped: list[Rejected] = []
        for pos in range(len(records)):
            keep, drop = decided[pos]
            if keep:
                kept.append(pickle.loads(keep))
            if drop:
                dropped.append(pickle.loads(drop))
        return FilterResult(kept, dropped)


class _EmbeddingActor:
    """A Ray Data actor: the embedding model, loaded once, applied to batch after batch."""

    def __init__(self, model: str | None, precision: str, batch_size: int) -> None:
        self.embedder = Embedder(model, batch_size=batch_size, precision=precision)  # type: ignore[arg-type]

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"pos": batch["pos"], "vector": self.embedder.compute(list(batch["text"]))}


class RayEmbedder(Embedder):
    """The run's embedder, with the model run by an actor pool on Ray Data for large inputs.

    The driver keeps the memo and the SQLite cache (it stays the only writer of the run directory);
    the actors get the driver's resolved precision, so every vector matches its cache key."""

    def __init__(self, engine: RayEngine, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.engine = engine

    def compute(self, texts: list[str]) -> np.ndarray:
        if not self.engine.distributes(len(texts)):
            return super().compute(texts)
        with self.engine.timed("embeddings", len(texts)):
            # Blocks small enough that every actor gets several: the model is the slow part.
            rows = self.engine.rows({"text": texts}, block_rows=max(64, min(1024, len(texts) // (4 * self.engine.spec.workers))))
            out = rows.map_batches(_EmbeddingActor, batch_size=None, batch_format="numpy",
                                   concurrency=self.engine.spec.workers,
                                   fn_constructor_kwargs={"model": self.model, "precision": self.resolved_precision,
                                                          "batch_size": self.batch_size})
            vectors = np.zeros((len(texts), 0), dtype=np.float32)
            for batch in out.iter_batches(batch_format="numpy", batch_size=None):
                if not vectors.shape[1]:
                    vectors = np.zeros((len(texts), batch["vector"].shape[1]), dtype=np.float32)
                vectors[batch["pos"]] = batch["vector"]
        return vectors
