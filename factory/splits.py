"""Train / validation / test splits of the final rows: stratified by bucket, grouped by near-duplicates.

A model scored on a test row whose near copy it trained on is scored on its memory. So rows are
first joined into groups: near-duplicates (character 3-gram Jaccard at or above the recipe's
`group_threshold`, found by factory.minhash, the near_dedup filter's search) and rows grounded in the
same passage. A group goes whole to one split. Held-out splits are filled per bucket (the label) to
their target with groups in a seeded order; a group that does not fit in what a split still needs
goes to train, so a held-out split never holds more rows than asked (fewer only when the groups
are too big to fit, which the report shows).
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from factory.graph import components
from factory.records import Record

TRAIN, VALIDATION, TEST = "train", "validation", "test"
SPLITS = (TRAIN, VALIDATION, TEST)  # the order they are written and shown in


def _targets(wanted: float, sizes: Counter[str]) -> dict[str, int]:
    """Rows per bucket for a held-out split: a fraction of each bucket, or a count spread over the
    buckets in proportion to their sizes (largest remainder)."""
    total = sum(sizes.values())
    if wanted < 1:
        return {b: round(wanted * n) for b, n in sizes.items()}
    count = min(int(wanted), total)
    exact = {b: count * n / total for b, n in sizes.items()} if total else {}
    out = {b: int(v) for b, v in exact.items()}
    for b in sorted(exact, key=lambda b: exact[b] - out[b], reverse=True)[: count - sum(out.values())]:
        out[b] += 1
    return out


def _groups(records: Sequence[Record], threshold: float, text: Callable[[Record], str]) -> list[int]:
    """A group number per row: near-duplicates and rows from the same passage share one."""
    from factory.filters.params import NearDedupParams
    from factory.minhash import near_duplicates

    texts = [text(r) for r in records]
    near = near_duplicates(texts, NearDedupParams(threshold=threshold)).root
    first_of_passage: dict[str, int] = {}
    same_passage = [first_of_passage.setdefault(passage, i) if (passage := record.meta.get("passage_id")) else i
                    for i, record in enumerate(records)]
    rows = np.arange(len(records), dtype=np.int64)
    # Each row linked to its near-duplicate cluster's root and to its passage's first row; a group's
    # number is its smallest row.
    return components(len(records), np.concatenate((rows, rows)),
                      np.concatenate((near, np.array(same_passage, dtype=np.int64)))).tolist()


def assign_splits(records: Sequence[Record], bucket: Callable[[Record], str], held_out: dict[str, float],
                  threshold: float, seed: int, text: Callable[[Record], str]) -> tuple[dict[str, str], dict[str, Any]]:
    """({record id: split}, a report) for `held_out` = {split: fraction or row count}; the rest is train.

    `text` is what near-duplicates are judged on: the kind's `split_text` (every text field by default, or
    only the part a model could memorise across splits, such as a preference pair's prompt)."""
    if not records:
        return {}, {"rows": {}, "groups": 0, "largest_group": 0}
    groups = _groups(records, threshold, text)
    members: dict[int, list[int]] = defaultdict(list)
    for i, group in enumerate(groups):
        members[group].append(i)
    sizes = Counter(bucket(r) for r in records)
    targets = {split: _targets(wanted, sizes) for split, wanted in held_out.items() if wanted}
    have: dict[str, Counter[str]] = {split: Counter() for split in targets}
    order = list(members)
    random.Random(f"{seed}/splits").shuffle(order)
    split_of: dict[str, str] = {}
    for group in order:
        rows = members[group]
        main = Counter(bucket(records[i]) for i in rows).most_common(1)[0][0]
        deficits = {s: targets[s].get(main, 0) - have[s][main] for s in targets}
        chosen = max(deficits, key=lambda s: deficits[s], default=None)
        if chosen is None or deficits[chosen] < len(rows):
            chosen = TRAIN
        else:
            have[chosen].update(bucket(records[i]) for i in rows)
        for i in rows:
            split_of[records[i].id] = chosen
    per_split = Counter(split_of.values())
    report = {"rows": {s: per_split[s] for s in SPLITS if per_split[s]},
              "per_bucket": {s: dict(sorted(Counter(bucket(r) for r in records if split_of[r.id] == s).items()))
                             for s in SPLITS if per_split[s]},
              "groups": len(members), "largest_group": max(len(m) for m in members.values()),
              "group_threshold": threshold}
    return split_of, report
