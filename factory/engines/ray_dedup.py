"""exact_dedup and near_dedup on Ray Data: the same decisions as in process, from distributed group-bys.

Both stages keep their in-process code for everything but the search for copies (`first_copies`,
`find`), which here runs as Ray Data operators over blocks of rows:

- exact: `map_batches` normalises each row's text into its key; a group-by over a hash of the key
  (a hash-partitioned shuffle) brings equal keys together; each partition names every row's first
  copy with one pandas group-by.
- near: `map_batches` shingles each row and computes its MinHash signature and its LSH band keys (the
  same functions as in process, which depend on the row alone); a group-by over the band keys pairs
  rows that share one (`bucket_pairs`); a second group-by over the pairs removes repeats and confirms
  each with the exact Jaccard of the two rows, shingled again from the texts, which every worker reads
  from the object store (one copy per node). The driver joins the confirmed pairs into clusters.

The driver collects only what the decisions need: the rows that are copies, and the candidate pairs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from factory.filters.exact import ExactDedup, dedup_keys
from factory.filters.near_dedup import NearDedup
from factory.filters.params import ExactDedupParams, NearDedupParams
from factory.graph import components
from factory.minhash import NearDuplicates, Shingled, band_keys, bucket_pairs

if TYPE_CHECKING:
    from factory.engines.ray_engine import RayEngine

_U64 = np.uint64


def _partition(values: np.ndarray, partitions: int) -> np.ndarray:
    """A partition number per uint64 value (its high bits, well mixed): the key of the shuffle."""
    x = values.astype(np.uint64) * _U64(0x9E3779B97F4A7C15)
    return ((x >> _U64(32)) % _U64(partitions)).astype(np.int64)


# -- exact ---------------------------------------------------------------------------------------

def _exact_keys(batch: dict[str, np.ndarray], per_label: bool, partitions: int) -> dict[str, np.ndarray]:
    import pandas as pd

    keys = dedup_keys(list(batch["text"]), list(batch["label"]) if per_label else None)
    present = np.array([bool(t) for t in batch["text"]], dtype=bool)  # no text: nothing to compare
    key = np.array(keys, dtype=object)[present]
    hashed = pd.util.hash_array(key) if len(key) else np.zeros(0, np.uint64)  # object strings, hashed in place
    return {"pos": batch["pos"][present], "key": key, "part": _partition(hashed, partitions)}


def _exact_firsts(group: Any) -> Any:
    first = group.groupby("key", sort=False)["pos"].transform("min")
    copies = group["pos"] != first
    return {"row": group["pos"][copies].to_numpy(np.int64), "first": first[copies].to_numpy(np.int64)}


class RayExactDedup(ExactDedup):
    """exact_dedup whose search for copies runs on Ray Data (see the module docstring)."""

    def __init__(self, params: ExactDedupParams, engine: RayEngine) -> None:
        super().__init__(params)
        self.engine = engine

    def first_copies(self, texts: Sequence[str], labels: Sequence[str | None] | None) -> dict[int, int]:
        if not self.engine.distributes(len(texts)):
            return super().first_copies(texts, labels)
        with self.engine.timed(self.type, len(texts)):
            rows = self.engine.rows({"text": list(texts),
                                     "label": [str(x) for x in labels] if labels else [""] * len(texts)})
            parts = self.engine.partitions(len(texts))
            found = (rows.map_batches(_exact_keys, fn_kwargs={"per_label": labels is not None, "partitions": parts},
                                      batch_format="numpy")
                     .groupby("part", num_partitions=parts).map_groups(_exact_firsts, batch_format="pandas"))
            out: dict[int, int] = {}
            for batch in found.iter_batches(batch_format="numpy", batch_size=None):
                out.update(zip(batch["row"].tolist(), batch["first"].tolist()))
        return out


# -- near ----------------------------------------------------------------------------------------

def _near_band_rows(batch: dict[str, np.ndarray], p: NearDedupParams, partitions: int) -> dict[str, np.ndarray]:
    """One output row per (input row, band) with the band's key; an input row without shingles: one
    row with band -1, counted and left out of the search."""
    bands, rows = p.resolved_bands()
    shingled = Shingled.of(list(batch["text"]), p)
    active = shingled.counts > 0
    keys = band_keys(shingled.sig[active], batch["group"][active], bands, rows, p.seed)
    pos = np.concatenate((np.repeat(batch["pos"][active], bands), batch["pos"][~active]))
    band = np.concatenate((np.tile(np.arange(bands, dtype=np.int64), int(active.sum())),
                           np.full(int((~active).sum()), -1, dtype=np.int64)))
    key = np.concatenate((keys.reshape(-1), np.zeros(int((~active).sum()), dtype=np.uint64)))
    part = _partition(key ^ band.astype(np.uint64), partitions)
    return {"pos": pos, "band": band, "key": key, "part": part, "empty": (band < 0).astype(np.int64)}


def _near_candidates(group: dict[str, np.ndarray], n: int, partitions: int) -> dict[str, np.ndarray]:
    """The candidate pairs of every band bucket in this partition, as codes a * n + b (a < b)."""
    order = np.argsort(group["pos"], kind="stable")  # bucket_pairs wants each bucket's rows ascending
    pos, band, key = group["pos"][order], group["band"][order], group["key"][order]
    codes = [np.zeros(0, dtype=np.int64)]
    for b in np.unique(band[band >= 0]).tolist():
        mine = band == b
        left, right = bucket_pairs(key[mine], pos[mine])
        codes.append(left * n + right)
    code = np.unique(np.concatenate(codes))
    return {"pair_code": code, "part": _partition(code, partitions)}


def _shingle_pairs(texts: Any, p: NearDedupParams, a: np.ndarray, b: np.ndarray) -> tuple[Shingled, np.ndarray, np.ndarray, np.ndarray]:
    """The rows of pairs (a, b), shingled from `texts` (a pyarrow table), and the pairs renumbered into them."""
    rows = np.unique(np.concatenate((a, b)))
    column = texts.column("text").take(rows).to_pylist() if len(rows) else []
    return Shingled.of(column, p), rows, np.searchsorted(rows, a), np.searchsorted(rows, b)


def _near_confirm(group: dict[str, np.ndarray], n: int, p: NearDedupParams, texts: Any) -> dict[str, np.ndarray]:
    """Every distinct candidate pair of this partition, with its exact Jaccard where it reaches the threshold."""
    import ray

    code = np.unique(group["pair_code"])
    shingled, rows, la, lb = _shingle_pairs(ray.get(texts), p, code // n, code % n)
    ca, cb, similarity = shingled.confirm(la, lb, p.threshold)
    at = np.searchsorted(code, rows[ca] * n + rows[cb])
    confirmed = np.zeros(len(code), dtype=bool)
    confirmed[at] = True
    value = np.zeros(len(code))
    value[at] = similarity
    return {"pair_code": code, "confirmed": confirmed, "similarity": value}


class RayNearDedup(NearDedup):
    """near_dedup whose search for copies runs on Ray Data (see the module docstring)."""

    def __init__(self, params: NearDedupParams, engine: RayEngine) -> None:
        super().__init__(params)
        self.engine = engine

    def find(self, texts: Sequence[str], groups: np.ndarray | None) -> NearDuplicates:
        n = len(texts)
        if not self.engine.distributes(n):
            return super().find(texts, groups)
        with self.engine.timed(self.type, n):
            ray, p, parts = self.engine.ray, self.params, self.engine.partitions(n)
            table = self.engine.table({"text": list(texts)})
            shared = ray.put(table)  # read by every pair check: one copy per node, in the object store
            rows = self.engine.rows({"text": table.column("text"),  # already Arrow: not converted again
                                     "group": np.zeros(n, np.int64) if groups is None else groups})
            keyed = rows.map_batches(_near_band_rows, fn_kwargs={"p": p, "partitions": parts},
                                     batch_format="numpy").materialize()
            empty = int(keyed.sum("empty") or 0)
            pairs = (keyed.groupby("part", num_partitions=parts)
                     .map_groups(_near_candidates, fn_kwargs={"n": n, "partitions": parts}, batch_format="numpy")
                     .groupby("part", num_partitions=parts)
                     .map_groups(_near_confirm, fn_kwargs={"n": n, "p": p, "texts": shared}, batch_format="numpy"))
            candidates = 0
            codes, sims = [np.zeros(0, np.int64)], [np.zeros(0)]
            for batch in pairs.iter_batches(batch_format="numpy", batch_size=None):
                candidates += len(batch["pair_code"])
                codes.append(batch["pair_code"][batch["confirmed"]])
                sims.append(batch["similarity"][batch["confirmed"]])
            code, similarity = np.concatenate(codes), np.concatenate(sims)
            order = np.argsort(code)  # as in process: pairs in code order
            code, similarity = code[order], similarity[order]
        a, b = code // n, code % n
        known = dict(zip(code.tolist(), similarity.tolist()))

        def jaccard(left: np.ndarray, right: np.ndarray) -> np.ndarray:
            """Known for confirmed pairs; the rest (a chained row and its cluster's root) shingled here."""
            lo, hi = np.minimum(left, right), np.maximum(left, right)
            out = np.array([known.get(c, np.nan) for c in (lo * n + hi).tolist()], dtype=np.float64)
            todo = np.flatnonzero(np.isnan(out))
            if len(todo):
                shingled, _, la, lb = _shingle_pairs(table, p, left[todo], right[todo])
                out[todo] = shingled.jaccard(la, lb)
            return out

        return NearDuplicates(components(n, a, b), a, b, similarity, candidates, empty, jaccard)
