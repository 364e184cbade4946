"""Is a filter stage worth running in this build? Judged on the user's real training rows, never on validation rows.

No chain fits every data set: a stage that helped on one set lowered the score on another. A stage marked
`auto: true` is therefore judged per build: the linear probe is trained on the synthetic rows as they stood
before the stage and on those after it (a weight stage: with its weights), both score the real training
rows, and the stage stays on unless it lowered that score. The real training rows are few (often eight per
label), so the decision is a point estimate: its paired bootstrap interval over those rows is recorded
beside it, and the card shows both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from factory.embeddings import Embedder
from factory.eval.linear import LinearEvaluator
from factory.eval.metrics import paired_gain_ci, scores, verdict
from factory.eval.params import LinearParams
from factory.records import Record


def judge_stage(before: Sequence[Record], after: Sequence[Record], real: Sequence[Record], labels: Sequence[str], *,
                embedder: Embedder, seed: int, resamples: int = 1000) -> dict[str, Any]:
    """{"on": keep the stage?, and the evidence}: the probe's macro-F1 on the real rows without and with the stage."""
    scored = [r for r in real if r.label in labels]
    if len({r.label for r in scored}) < 2 or not before:
        return {"on": True, "evidence": "not judged: no real training rows of two labels (or no rows) to judge on"}
    probe = LinearEvaluator(LinearParams(), embedder)
    gold = [str(r.label) for r in scored]
    without = probe.predict(before, scored, labels, seed=seed).predicted
    with_stage = probe.predict(after, scored, labels, seed=seed).predicted if after else []
    if not with_stage:
        return {"on": False, "evidence": "the stage left no rows", "scored_on": len(scored)}
    change = paired_gain_ci([with_stage], [without], gold, labels, resamples=resamples, seed=seed)
    return {"on": change["gain"] >= 0, "scored_on": len(scored),
            "without": round(scores(without, gold, labels)["macro_f1"], 4),
            "with": round(scores(with_stage, gold, labels)["macro_f1"], 4),
            "change": {k: round(change[k], 4) for k in ("gain", "ci_low", "ci_high")}, "verdict": verdict(change)}
