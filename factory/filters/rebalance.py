"""rebalance: cap over-full topic clusters within each label and report the thin ones."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from factory.errors import require
from factory.filters.base import Filter, FilterContext, FilterResult
from factory.filters.params import RebalanceParams
from factory.records import Record, Rejected

EXAMPLE_CHARS = 300  # examples go into prompts and reports: a long row is cut, not left out
SILHOUETTE_SAMPLE = 2000  # silhouette is quadratic in the rows; above this it is estimated on a sample


@dataclasses.dataclass(slots=True)
class _Clustering:
    k: int
    assign: np.ndarray
    distance: np.ndarray  # of each row to its cluster's centre
    silhouette: float | None


class Rebalance(Filter):
    """Per-label KMeans on the shared embeddings: caps over-represented clusters, reports thin ones.

    The cookbook's cluster-and-balance idea as a filter. Within each label, a cluster holding more
    than `max_share` of the label keeps only its rows nearest the centre (the most typical ones);
    the rest are dropped as `over_represented`. Thin clusters are topics the generator under-covers:
    with `top_up` the stats name them, with example texts, so the build can ask for more of them.
    """

    type = "rebalance"
    Params = RebalanceParams
    params: RebalanceParams

    def apply(self, records: Sequence[Record]) -> FilterResult:
        context = self.context
        records = list(records)
        groups: dict[str, list[int]] = defaultdict(list)
        for i, record in enumerate(records):
            groups[_bucket(record)].append(i)

        out: dict[int, Record] = {}
        drop: dict[int, str] = {}
        per_label: dict[str, dict[str, Any]] = {}
        top_up: dict[str, list[dict[str, Any]]] = {}
        for label, idx in groups.items():
            report, labelled, dropped, wanted = self._label(label, [records[i] for i in idx], context)
            per_label[label] = report
            out.update({idx[j]: r for j, r in labelled.items()})
            drop.update({idx[j]: detail for j, detail in dropped.items()})
            if wanted:
                top_up[label] = wanted

        kept = [out.get(i, r) for i, r in enumerate(records) if i not in drop]
        dropped_rows = [Rejected.from_record(out.get(i, records[i]), self.type, "over_represented", detail)
                        for i, detail in sorted(drop.items())]
        names = list(dict.fromkeys([*context.labels, *groups]))
        before = Counter(_bucket(r) for r in records)
        after = Counter(_bucket(r) for r in kept)
        stats: dict[str, Any] = {
            "balance_before": {label: before[label] for label in names},
            "balance_after": {label: after[label] for label in names},
            "labels": per_label,
        }
        if self.params.top_up:
            stats["top_up"] = top_up
        return FilterResult(kept, dropped_rows, stats)

    def _label(
        self, label: str, rows: list[Record], context: FilterContext,
    ) -> tuple[dict[str, Any], dict[int, Record], dict[int, str], list[dict[str, Any]]]:
        """One label: (report, rows tagged with their cluster, dropped positions -> detail, top-up asks)."""
        n = len(rows)
        if n < self.params.min_rows:
            return {"rows": n, "skipped": f"only {n} rows; need {self.params.min_rows}"}, {}, {}, []
        x = context.embeddings().encode([r.text for r in rows])
        clustering = self._cluster(x, context.seed)
        if clustering is None:
            return {"rows": n, "skipped": "too few distinct rows to cluster"}, {}, {}, []
        k, assign, distance = clustering.k, clustering.assign, clustering.distance
        sizes = np.bincount(assign, minlength=k)
        share_cap = max(self.params.max_share, 1.0 / k)
        cap = math.ceil(share_cap * n - 1e-9)
        thin_share = self.params.thin_share if self.params.thin_share is not None else 0.5 / k

        tagged = {j: dataclasses.replace(r, meta={**r.meta, "cluster": int(assign[j])}) for j, r in enumerate(rows)}
        dropped: dict[int, str] = {}
        thin: list[dict[str, Any]] = []
        wanted: list[dict[str, Any]] = []
        for c in range(k):
            # Nearest the centre first; ties go to the earlier row so the choice is stable.
            members = sorted(np.flatnonzero(assign == c).tolist(), key=lambda j: (float(distance[j]), j))
            size = len(members)
            for rank, j in enumerate(members[cap:], start=cap + 1):
                dropped[j] = (f"cluster {c} of '{label}' holds {size} of {n} rows ({size / n:.0%} > cap "
                              f"{share_cap:.0%} = {cap} rows); this row is #{rank} from its centre")
            if size / n < thin_share:
                examples = [_clip(rows[j].text) for j in members[: self.params.examples]]
                thin.append({"cluster": c, "size": size, "share": round(size / n, 4), "examples": examples})
                if self.params.top_up:
                    wanted.append({"cluster": c, "examples": examples, "wanted": max(1, math.ceil(n / k) - size)})
        report: dict[str, Any] = {
            "rows": n, "k": k, "k_from": "silhouette" if self.params.clusters_per_label == "auto" else "fixed",
            "cap": cap, "sizes": sizes.tolist(), "thin_share": round(thin_share, 4), "thin": thin,
            "dropped": len(dropped),
        }
        if clustering.silhouette is not None:
            report["silhouette"] = round(clustering.silhouette, 4)
        return report, tagged, dropped, wanted

    def _cluster(self, x: np.ndarray, seed: int) -> _Clustering | None:
        """KMeans with the configured or silhouette-chosen k; None when there is nothing to split."""
        cluster = require("sklearn.cluster", "eval")
        metrics = require("sklearn.metrics", "eval")
        n = len(x)
        distinct = len(np.unique(np.round(x, 5), axis=0))
        if self.params.clusters_per_label == "auto":
            candidates = list(range(2, min(self.params.max_clusters, n // 5, distinct) + 1))
        else:
            candidates = [min(self.params.clusters_per_label, distinct)]
        candidates = [k for k in candidates if k >= 2]
        if not candidates:
            return None
        best: _Clustering | None = None
        for k in candidates:
            model = cluster.KMeans(n_clusters=k, n_init=10, random_state=seed).fit(x)
            # Renumber: cluster 0 is the largest (ties: the one seen first), so ids read the same in every report.
            raw = model.labels_.astype(int)
            sizes = np.bincount(raw, minlength=k)
            first = [int(np.flatnonzero(raw == c)[0]) if sizes[c] else n for c in range(k)]
            order = sorted(range(k), key=lambda c: (-sizes[c], first[c]))
            assign = np.argsort(order)[raw]
            centres = model.cluster_centers_[order]
            score = None
            if len(candidates) > 1 and 2 <= len(set(assign.tolist())) <= n - 1:
                sample = SILHOUETTE_SAMPLE if n > SILHOUETTE_SAMPLE else None
                score = float(metrics.silhouette_score(x, assign, sample_size=sample, random_state=seed))
            distance = np.linalg.norm(x - centres[assign], axis=1)
            current = _Clustering(k, assign, distance, score)
            if best is None or (score is not None and (best.silhouette is None or score > best.silhouette)):
                best = current
        return best


def _bucket(record: Record) -> str:
    # The build's bucket: the label, or "all" for instruction rows.
    return record.label or "all"


def _clip(text: str) -> str:
    return text if len(text) <= EXAMPLE_CHARS else text[: EXAMPLE_CHARS - 1] + "…"
