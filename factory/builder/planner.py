"""Round planning: pure functions of counts, so each is tested on its own (tests/test_planner.py)."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from factory.records import STAGE_TARGET, Record, Rejected

# A first round asks for a little more than the deficit: a few rows are always lost to the filters.
HEADROOM = 1.05
# The acceptance rate assumed at worst, so one bad round cannot ask for an unbounded number of prompts.
MIN_RATE = 0.1


def plan_round(targets: Mapping[str, int], kept: Mapping[str, int], issued: Mapping[str, int],
               budget_left: int, per_request: int = 1, most: int | None = None) -> dict[str, int]:
    """Prompts to send per bucket this round: the deficit divided by the rows kept per request so far.

    The first round is optimistic (paid APIs bill every surplus request): it expects `per_request`
    rows from each request (a table batch yields several). `most` caps a bucket's prompts per round
    (a kind whose next prompt depends on the last reply sends one at a time). When the budget cannot
    cover every plan, what is left is shared in proportion to need (largest needs get the remainder).
    """
    plan: dict[str, int] = {}
    for bucket, target in targets.items():
        deficit = target - kept.get(bucket, 0)
        if deficit <= 0:
            continue
        sent = issued.get(bucket, 0)
        rate = kept.get(bucket, 0) / sent if sent else float(per_request)
        plan[bucket] = math.ceil(deficit / max(rate, MIN_RATE) * HEADROOM)
        if most is not None:
            plan[bucket] = min(plan[bucket], most)
    total = sum(plan.values())
    if total > budget_left:
        scaled = {b: n * budget_left // total for b, n in plan.items()}
        for b in sorted(plan, key=lambda b: -plan[b])[: budget_left - sum(scaled.values())]:
            scaled[b] += 1
        plan = {b: n for b, n in scaled.items() if n > 0}
    return plan


def fixed_round(targets: Mapping[str, int], issued: Mapping[str, int], requests_per_bucket: int) -> dict[str, int]:
    """Fixed-request mode (compare): exactly `requests_per_bucket` prompts per bucket, whatever was kept."""
    return {b: requests_per_bucket - issued.get(b, 0) for b in targets if issued.get(b, 0) < requests_per_bucket}


def trim_to_target(kept: Sequence[Record], targets: Mapping[str, int],
                   bucket_of: Callable[[Record], str]) -> tuple[list[Record], list[Rejected]]:
    """Exactly the target per bucket, in generation order; the rest is surplus of the last round."""
    taken: Counter[str] = Counter()
    final, surplus = [], []
    for record in kept:
        bucket = bucket_of(record)
        if taken[bucket] < targets[bucket]:
            taken[bucket] += 1
            final.append(record)
        else:
            surplus.append(Rejected.from_record(record, STAGE_TARGET, "over_target", "the label already has its target"))
    return final, surplus


def top_up_focus(funnel: Sequence[Mapping[str, Any]]) -> dict[str, list[list[str]]]:
    """Per bucket, the example texts of each prompt to aim at a thin cluster (from rebalance's `top_up`)."""
    focus: dict[str, list[list[str]]] = defaultdict(list)
    for stage in funnel:
        for bucket, clusters in stage.get("stats", {}).get("top_up", {}).items():
            for cluster in clusters:
                focus[bucket] += [list(cluster["examples"])] * int(cluster["wanted"])
    return focus
