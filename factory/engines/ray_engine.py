"""The Ray engine: a build's requests on Ray actors, its large filter passes and embeddings on Ray Data.

What moves, and why the output stays the same:
- each generator's requests go to actors that load it once (`ray_generation`); the driver commits
  every reply to the request cache, so the run directory has one writer;
- exact and near dedup search for copies with distributed group-bys (`ray_dedup`), per-row stages
  and the embedding model run as `map_batches` (`ray_rows`), each computing what the local code
  computes, row by row;
- stages that need every row at once (critic, confidence, rebalance, conflicts, semantic dedup,
  leakage, novelty...) run on the driver, on the vectors the Ray embedder computed; the build logs
  which, and the manifest lists them.
Inputs under `min_rows` rows stay in this process: Ray Data's start-up costs seconds per stage.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from factory.embeddings import Embedder
from factory.engines import Engine
from factory.engines.ray_cluster import connect, dashboard_url
from factory.engines.ray_dedup import RayExactDedup, RayNearDedup
from factory.engines.ray_generation import RayGenerator
from factory.engines.ray_rows import RayEmbedder, RowsOnRay
from factory.filters.base import Filter
from factory.filters.exact import ExactDedup
from factory.filters.near_dedup import NearDedup
from factory.generators.base import Generator, GeneratorParams
from factory.spec import EngineSpec

log = logging.getLogger(__name__)

# Stages with a distributed search of their own; rowwise stages need none (RowsOnRay splits them).
_DISTRIBUTED: dict[type[Filter], Any] = {ExactDedup: RayExactDedup, NearDedup: RayNearDedup}
_ROWS_PER_BLOCK = 20_000  # rows per Ray Data block: enough work per task to pay for its start


class RayEngine(Engine):
    """Builds on a Ray cluster (see the module docstring); `spec` is the recipe's `engine:`."""

    name = "ray"

    def __init__(self, spec: EngineSpec) -> None:
        self.spec = spec
        self._ray: Any = None
        self.on_driver: list[str] = []  # stages that need every row at once
        self.steps: dict[str, dict[str, float]] = {}  # per step on Ray Data: calls, rows, seconds

    @property
    def ray(self) -> Any:
        if self._ray is None:
            self._ray = connect(self.spec.address)
        return self._ray

    def distributes(self, rows: int) -> bool:
        """Whether a step over `rows` rows goes to Ray Data (else it runs in this process)."""
        return rows > 0 and rows >= self.spec.min_rows

    def partitions(self, rows: int) -> int:
        """Shuffle partitions for a group-by: a few per CPU of the cluster, more for large inputs."""
        cpus = int(self.ray.cluster_resources().get("CPU", 1))
        return max(2 * cpus, rows // 200_000)

    def table(self, columns: Mapping[str, Sequence[Any]]) -> Any:
        import pyarrow as pa

        return pa.table(dict(columns))

    def rows(self, columns: Mapping[str, Sequence[Any]], block_rows: int = _ROWS_PER_BLOCK) -> Any:
        """A Ray Dataset of the columns plus `pos` (each row's position), in blocks of `block_rows` rows."""
        import numpy as np

        n = len(next(iter(columns.values())))
        table = self.table({"pos": np.arange(n, dtype=np.int64), **columns})
        blocks = max(1, -(-n // block_rows))
        size = -(-n // blocks)
        return self.ray.data.from_arrow([table.slice(k * size, size) for k in range(blocks)])

    @contextlib.contextmanager
    def timed(self, step: str, rows: int) -> Iterator[None]:
        """Record a step's calls, rows and seconds on Ray Data (the manifest's `engine.steps`)."""
        started = time.perf_counter()
        yield
        entry = self.steps.setdefault(step, {"calls": 0, "rows": 0, "seconds": 0.0})
        entry["calls"] += 1
        entry["rows"] += rows
        entry["seconds"] = round(entry["seconds"] + time.perf_counter() - started, 3)

    def generator(self, params: GeneratorParams) -> Generator:
        return RayGenerator(params, self.spec.workers, self.spec.address)

    def embedder(self, cache: Path | None) -> Embedder:
        return RayEmbedder(self, cache=cache)

    def stage(self, stage: Filter) -> Filter:
        distributed = _DISTRIBUTED.get(type(stage))
        if distributed is not None:
            return distributed(stage.params, self)
        if stage.rowwise:
            return RowsOnRay(stage, self)
        if stage.type not in self.on_driver:
            self.on_driver.append(stage.type)
            log.info("ray: %s runs in this process (it needs every row at once)", stage.type)
        return stage

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "address": self.spec.address, "workers": self.spec.workers,
                               "min_rows": self.spec.min_rows, "steps": self.steps, "on_driver": self.on_driver}
        if self._ray is not None:
            out["cpus"] = int(self._ray.cluster_resources().get("CPU", 0))
            out["nodes"] = len([node for node in self._ray.nodes() if node.get("Alive")])
            if url := dashboard_url():
                out["dashboard"] = url
        return out
