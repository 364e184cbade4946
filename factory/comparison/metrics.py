"""What `factory compare` measures per generator, and the verdict.

Metrics, per generator. "Requests" are the N x labels prompts; "parsed rows" the replies that
became rows; "kept rows" the final dataset (after the filters and the trim to the target).

- duplicates (before any filter, over parsed rows): `exact_rate` = rows ExactDedup (default
  settings: normalised text, across labels) drops / parsed rows; `near_rate` = rows NearDedup
  (default settings: char 3-gram Jaccard >= 0.8, across labels) drops from the rows exact dedup
  kept / parsed rows. The two add up to the share of parsed rows that copy another.
- failures (over requests): `refusal_rate` = replies the parser read as a refusal
  (`factory.text.is_refusal` on the reply or its text field); `parse_failure_rate` = replies
  rejected as bad_json, empty, truncated, unknown_label or label_mismatch; `request_failure_rate` =
  requests that never got a reply; `copy_rate` = replies that copied a few-shot example or repeated
  the prompt (copied_example, repeats_prompt). `reasons` counts every parse-stage rejection.
- diversity (of kept rows): `distinct_1` / `distinct_2` = distinct word n-grams / all word n-grams
  over the kept rows (Li et al., 2016; it falls as a set grows, so compare sets of similar size);
  `mean_distance` = mean of 1 - cosine over all pairs of a seeded sample of at most 1000 kept rows'
  MiniLM embeddings, computed exactly in O(rows x dim) from the sum vector (no n x n matrix);
  `clusters_90` = how few clusters hold 90% of the rows, where KMeans (k = 20, fewer only when the
  union has fewer distinct rows; seeded) is fitted ONCE on the union of every generator's sampled
  kept rows, so the counts are comparable.
- fidelity: share of rows whose intended label a linear probe (probe.fit_proba) trained on the
  recipe's real training rows also predicts, on the kept rows and on all parsed rows (seeded
  samples of at most 1000). None without real_data.
- acceptance: kept / in for every stage of the run's funnel (parse, each filter, the target trim)
  and `overall` = kept rows / requests.
- eval: mean and std over the recipe's seeds of macro-F1 on the real validation rows, for the
  real, synthetic and synthetic+real conditions of the recipe's first evaluator (None without eval).
- usage: prompt and completion tokens of the N x labels requests, `tokens_per_kept_row`,
  `request_s` (the sum of per-request seconds, cached replies included, so a resumed compare still
  reports what generation took), `wall_s` (this invocation's generation wall time), `cost` in USD
  (generators/pricing.py: the recipe's price, else the shipped table; None when the model has no
  known price, 0 for local models) and `cost_per_kept_row`: the cheapest generator per request is
  often not the cheapest per row that survives the filters.

Pairs (`pair=True`): the rows of each prompt (label, index) next to each other, and per generator
pair the cross-label collision rate: the share of the two generators' parsed rows (seeded samples of
at most 1000 each) that match a row of the OTHER generator with a DIFFERENT label, by normalised
text (factory.text.normalize) or by embedding cosine >= 0.95 (the seed article's gotcha: one text
produced for two labels teaches a classifier nothing).
"""



from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from itertools import combinations
from typing import Any

import numpy as np

from factory.comparison.runs import GeneratorRun
from factory.embeddings import Embedder
from factory.errors import require
from factory.eval.names import CONDITIONS, SYNTHETIC_REAL
from factory.filters.exact import ExactDedup, ExactDedupParams
from factory.filters.near_dedup import NearDedup, NearDedupParams
from factory.filters.probe import fit_proba
from factory.generators.base import GeneratorParams
from factory.generators.pricing import price_of
from factory.records import Completion, Record, Rejected
from factory.run.manifest import Manifest
from factory.spec import RecipeBase
from factory.text import normalize, words

PARSE_FAILURES = ("bad_json", "empty", "truncated", "unknown_label", "label_mismatch")
COPIES = ("copied_example", "repeats_prompt")
MAX_EMBEDDED = 1000  # rows per generator that embedding metrics look at (a seeded sample beyond)
CLUSTERS = 20
CLUSTER_SHARE = 0.9
COLLISION_COSINE = 0.95
EXAMPLES = 12  # aligned prompts shown side by side in compare.json and the HTML page


def share(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def seeded_sample(rows: Sequence[Record], seed: int, limit: int = MAX_EMBEDDED) -> list[Record]:
    """All rows when there are at most `limit`, else a seeded sample in the original order."""
    if len(rows) <= limit:
        return list(rows)
    picked = sorted(random.Random(f"{seed}/compare").sample(range(len(rows)), limit))
    return [rows[i] for i in picked]


def duplicate_rates(parsed: Sequence[Record]) -> dict[str, Any]:
    """Exact, then near, duplicates among the parsed rows, as shares of the parsed rows (see the module doc)."""
    exact = ExactDedup(ExactDedupParams()).apply(parsed)
    near = NearDedup(NearDedupParams()).apply(exact.kept)
    return {"exact": len(exact.dropped), "near": len(near.dropped),
            "exact_rate": share(len(exact.dropped), len(parsed)), "near_rate": share(len(near.dropped), len(parsed))}


def failure_rates(rows: Sequence[Record | Rejected]) -> dict[str, Any]:
    """Refusals, parse failures and failed requests, as shares of the requests."""
    reasons = Counter(r.reason for r in rows if isinstance(r, Rejected))
    return {
        "refusal_rate": share(reasons["refusal"], len(rows)),
        "parse_failure_rate": share(sum(reasons[r] for r in PARSE_FAILURES), len(rows)),
        "request_failure_rate": share(reasons["request_failed"], len(rows)),
        "copy_rate": share(sum(reasons[r] for r in COPIES), len(rows)),
        "reasons": dict(sorted(reasons.items())),
    }


def distinct_n(texts: Sequence[str], n: int) -> float | None:
    """Distinct word n-grams / all word n-grams over `texts` (n-grams do not cross rows)."""
    seen: set[tuple[str, ...]] = set()
    total = 0
    for text in texts:
        tokens = words(text)
        grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
        total += len(grams)
        seen.update(grams)
    return share(len(seen), total)


def mean_pairwise_distance(vectors: np.ndarray) -> float | None:
    """Mean 1 - cosine over all pairs i != j of unit vectors, exactly, without the n x n matrix.

    sum_{i != j} v_i . v_j = |sum_i v_i|^2 - sum_i |v_i|^2.
    """
    m = len(vectors)
    if m < 2:
        return None
    v = vectors.astype(np.float64)
    total = v.sum(axis=0)
    mean_cosine = (total @ total - np.einsum("ij,ij->", v, v)) / (m * (m - 1))
    return float(1.0 - mean_cosine)


def clusters_holding(assignments: np.ndarray, fraction: float = CLUSTER_SHARE) -> int:
    """The fewest clusters that together hold at least `fraction` of the rows."""
    counts = np.sort(np.bincount(assignments))[::-1]
    if not counts.sum():
        return 0
    return int(np.searchsorted(np.cumsum(counts), fraction * counts.sum() - 1e-9) + 1)


def shared_clusters(vectors: dict[str, np.ndarray], seed: int) -> tuple[dict[str, int | None], int]:
    """clusters_90 per generator, under ONE KMeans fitted on the union of everyone's rows; and its k."""
    filled = [v for v in vectors.values() if len(v)]
    if not filled:
        return {name: None for name in vectors}, 0
    union = np.concatenate(filled)
    k = min(CLUSTERS, len(np.unique(union, axis=0)))
    cluster = require("sklearn.cluster", "eval")
    model = cluster.KMeans(n_clusters=k, n_init=4, random_state=seed).fit(union)
    return {name: clusters_holding(model.predict(v)) if len(v) else None for name, v in vectors.items()}, k


def label_fidelity(rows: Sequence[Record], vectors: np.ndarray, real_x: np.ndarray, real_y: Sequence[str],
                   labels: Sequence[str], seed: int) -> float | None:
    """Share of `rows` whose label a linear probe trained on the real rows also predicts."""
    if not rows or len(set(real_y)) < 2:
        return None
    proba = fit_proba(real_x, real_y, vectors, labels, seed)
    predicted = [labels[i] for i in proba.argmax(axis=1)]
    return float(np.mean([p == r.label for p, r in zip(predicted, rows)]))


def acceptance(manifest: Manifest, kept: int, requests: int) -> dict[str, Any]:
    """kept / in through every stage of the run's funnel, and kept rows / requests overall."""
    stages = [{"stage": s.stage, "in": s.rows_in, "kept": s.kept, "rate": share(s.kept, s.rows_in)}
              for s in manifest.funnel]
    return {"stages": stages, "overall": share(kept, requests)}


def eval_scores(manifest: Manifest, evaluator: str) -> dict[str, Any] | None:
    """Macro-F1 mean and std over seeds per condition, from the run's eval (None when it has none)."""
    ev = manifest.eval
    scored = (ev or {}).get("evaluators", {}).get(evaluator)
    if not scored:
        return None
    out: dict[str, Any] = {"evaluator": evaluator, "validation_rows": ev["validation_rows"], "seeds": ev["seeds"]}
    for condition in CONDITIONS:
        if condition in scored:
            f1 = scored[condition]["macro_f1"]
            out[condition] = {"mean": f1["mean"], "std": f1["std"]}
    out["gain"] = scored.get("gain")
    return out


def cost(params: GeneratorParams, completions: Sequence[Completion]) -> float | None:
    """USD of the requests: what each cost when sent (batch prices included), else its tokens at the
    generator's price; None when the model has no known price (generators/pricing.py). Local models cost 0."""
    rate = price_of(params)
    if rate is None:
        return None
    return sum(c.cost_usd if c.cost_usd is not None else rate.cost(c.prompt_tokens, c.completion_tokens)
               for c in completions)


def usage(run: GeneratorRun, score: float | None) -> dict[str, Any]:
    """Tokens, time and cost of the run's requests, and the two efficiency figures the verdict ranks by."""
    done = [c for c in run.completions if c is not None]
    prompt_tokens = sum(c.prompt_tokens for c in done)
    completion_tokens = sum(c.completion_tokens for c in done)
    tokens = prompt_tokens + completion_tokens
    kept = len(run.final)
    per_1k = tokens / 1000
    return {
        "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "tokens": tokens,
        "tokens_per_kept_row": share(tokens, kept),
        "request_s": round(sum(c.seconds for c in done), 3),
        "wall_s": run.manifest.timings.generation_s,
        "cost": (spent := cost(run.params, done)),
        "cost_per_kept_row": share(spent, kept) if spent is not None else None,
        "kept_per_1k_tokens": share(kept, per_1k),
        "score_per_1k_tokens": share(score, per_1k) if score is not None else None,
    }


class Measurer:
    """Computes every generator's metrics with one shared embedder (each text is embedded once)."""

    def __init__(self, spec: RecipeBase, real_train: Sequence[Record], embedder: Embedder) -> None:
        self.spec = spec
        self.seed = spec.seed
        self.embedder = embedder
        self.labels = list(spec.buckets())
        self.real_y = [r.label or "" for r in real_train]
        self.real_x = embedder.encode([r.text for r in real_train]) if real_train else np.zeros((0, 0))
        self.evaluator = eval_spec.evaluators[0] if (eval_spec := spec.evaluation()) else None

    def vectors(self, rows: Sequence[Record]) -> np.ndarray:
        return self.embedder.encode([r.text for r in rows]) if rows else np.zeros((0, 1), dtype=np.float32)

    def fidelity(self, rows: Sequence[Record]) -> float | None:
        if not self.real_y:
            return None
        sample = seeded_sample(rows, self.seed)
        return label_fidelity(sample, self.vectors(sample), self.real_x, self.real_y, self.labels, self.seed)

    def measure(self, run: GeneratorRun) -> dict[str, Any]:
        """Everything but the shared-cluster count (which needs every generator's rows)."""
        parsed, kept = run.parsed, [r.text for r in run.final]
        sample = seeded_sample(run.final, self.seed)
        scores = eval_scores(run.manifest, self.evaluator) if self.evaluator else None
        score = (scores or {}).get(SYNTHETIC_REAL, {}).get("mean")
        reported = run.manifest.generators[0].get("models_reported") or {}
        return {
            "run_dir": str(run.run_dir),
            "backend": run.params.backend,  # type: ignore[attr-defined]
            "model": run.params.model,
            "models_reported": reported,
            "status": run.manifest.status,
            "requests": len(run.rows), "parsed": len(parsed), "kept": len(run.final),
            "duplicates": duplicate_rates(parsed),
            "failures": failure_rates(run.rows),
            "diversity": {
                "distinct_1": distinct_n(kept, 1), "distinct_2": distinct_n(kept, 2),
                "mean_distance": mean_pairwise_distance(self.vectors(sample)),
                "clusters_90": None, "embedded_rows": len(sample),
            },
            "fidelity": {"kept": self.fidelity(run.final), "parsed": self.fidelity(parsed)},
            "acceptance": acceptance(run.manifest, len(run.final), len(run.rows)),
            "eval": scores,
            "usage": usage(run, score),
        }


# -- verdict ----------------------------------------------------------------------------------------


def _ranked(metrics: dict[str, dict[str, Any]], key: str) -> list[str]:
    """Generator names by usage[key], best first; a generator without a value goes last."""
    def value(name: str) -> tuple[bool, float]:
        v = metrics[name]["usage"][key]
        return (v is not None, v if v is not None else 0.0)
    return sorted(metrics, key=value, reverse=True)


def verdict(metrics: dict[str, dict[str, Any]], has_eval: bool) -> dict[str, Any]:
    """The one-line verdict: the best synthetic+real macro-F1 per 1k tokens, and whether its synthetic+real
    score differs from the runner-up's (second by the same ranking) by more than the seed spread:
    |mean_a - mean_b| > std_a + std_b. Without an eval the ranking falls back to kept rows per 1k tokens,
    and the line says so."""
    out: dict[str, Any] = {"basis": None, "best": None, "runner_up": None, "delta": None, "outside_spread": None}
    if not metrics:
        return out | {"text": "verdict: no generator was compared"}
    if not has_eval:
        order = _ranked(metrics, "kept_per_1k_tokens")
        best = order[0]
        text = ("verdict: needs an eval section in the recipe (eval: with real_data) to rank by score; falling back to "
                f"kept rows per 1k tokens: {best} ({_num(metrics[best]['usage']['kept_per_1k_tokens'])} rows per 1k tokens, "
                f"{metrics[best]['kept']} rows)")
        if len(order) > 1:
            other = order[1]
            text += f", runner-up {other} ({_num(metrics[other]['usage']['kept_per_1k_tokens'])})"
        return out | {"basis": "kept rows per 1k tokens", "best": best, "runner_up": order[1] if len(order) > 1 else None,
                      "text": text}
    order = _ranked(metrics, "score_per_1k_tokens")
    best = order[0]
    a = (metrics[best]["eval"] or {}).get(SYNTHETIC_REAL)
    if a is None:
        return out | {"basis": "synthetic+real macro-F1 per 1k tokens",
                      "text": "verdict: no generator has a synthetic+real score (no rows were kept)"}
    text = (f"verdict: {best} has the best synthetic+real macro-F1 per 1k tokens "
            f"({a['mean']:.3f} over {metrics[best]['usage']['tokens'] / 1000:.1f}k tokens = "
            f"{_num(metrics[best]['usage']['score_per_1k_tokens'])} per 1k)")
    out |= {"basis": "synthetic+real macro-F1 per 1k tokens", "best": best}
    other = order[1] if len(order) > 1 else None
    b = (metrics[other]["eval"] or {}).get(SYNTHETIC_REAL) if other else None
    if other is None or b is None:
        return out | {"text": text + ("; no runner-up with a score to compare with" if other else "; it is the only generator")}
    delta = a["mean"] - b["mean"]
    outside = abs(delta) > a["std"] + b["std"]
    text += (f"; synthetic+real {delta:+.3f} vs runner-up {other} ({b['mean']:.3f}): "
             f"{'outside' if outside else 'within'} the seed spread "
             f"(|Δ| {abs(delta):.3f} {'>' if outside else '<='} {a['std']:.3f} + {b['std']:.3f})")
    return out | {"runner_up": other, "delta": delta, "outside_spread": bool(outside), "text": text}


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


# -- pairs ------------------------------------------------------------------------------------------


def aligned_rows(runs: Sequence[GeneratorRun]) -> list[dict[str, Any]]:
    """Per prompt (label, index): its axes and what each generator made of it (text, kept or why rejected)."""
    table: dict[tuple[str, int], dict[str, Any]] = {}
    for run in runs:
        final = {r.id for r in run.final}
        for prompt, row in zip(run.prompts, run.rows):
            entry = table.setdefault((prompt.bucket, prompt.index), {
                "label": prompt.bucket, "index": prompt.index, "axes": prompt.target.get("axes", {}), "rows": {}})
            cell: dict[str, Any] = {"text": row.text}
            if isinstance(row, Record):
                # The row's other fields (an instruction pair's response) next to its text.
                cell |= {"kept": row.id in final, **{k: v for k, v in list(row.fields.items())[1:] if v}}
            else:
                cell |= {"kept": False, "rejected": row.reason}
            entry["rows"][run.name] = cell
    return list(table.values())


def cross_label_collisions(a: Sequence[Record], b: Sequence[Record], va: np.ndarray, vb: np.ndarray,
                           threshold: float = COLLISION_COSINE) -> dict[str, Any]:
    """Rows of a and b that match a row of the other with a different label (normalised text, or cosine
    >= threshold), as a share of all rows of both."""
    if not a or not b:
        return {"rows": len(a) + len(b), "colliding": 0, "rate": None, "examples": []}
    labels_a, labels_b = np.array([r.label or "" for r in a]), np.array([r.label or "" for r in b])
    norm_a, norm_b = np.array([normalize(r.text) for r in a]), np.array([normalize(r.text) for r in b])
    hit = (labels_a[:, None] != labels_b[None, :]) & (
        (norm_a[:, None] == norm_b[None, :]) | (va @ vb.T >= threshold - 1e-6))
    colliding = int(hit.any(axis=1).sum() + hit.any(axis=0).sum())
    examples = [{"a": a[i].text, "a_label": a[i].label, "b": b[j].text, "b_label": b[j].label}
                for i, j in zip(*np.nonzero(hit))][:5]
    return {"rows": len(a) + len(b), "colliding": colliding, "rate": colliding / (len(a) + len(b)), "examples": examples}


def pairs_section(runs: Sequence[GeneratorRun], measurer: Measurer) -> dict[str, Any]:
    samples = {run.name: seeded_sample(run.parsed, measurer.seed) for run in runs}
    collisions = []
    for x, y in combinations(runs, 2):
        found = cross_label_collisions(samples[x.name], samples[y.name], measurer.vectors(samples[x.name]),
                                       measurer.vectors(samples[y.name]))
        collisions.append({"a": x.name, "b": y.name, **found})
    rows = aligned_rows(runs)
    return {"prompts": len(rows), "examples": rows[:EXAMPLES], "collisions": collisions}


# -- the command ------------------------------------------------------------------------------------


