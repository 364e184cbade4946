"""The eval stage: conditions x seeds x evaluators, the filter ablation and the gate."""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from factory.embeddings import Embedder
from factory.eval.metrics import mean_spread, paired_gain_ci, scores, verdict
from factory.eval.names import CONDITIONS, LINEAR, REAL, SYNTHETIC, SYNTHETIC_REAL
from factory.records import Record
from factory.spec import EvalSpec

log = logging.getLogger(__name__)
# The fewest real training rows of every label for the ablation to draw from them (fewer: each run takes them all).
MIN_ROWS_TO_DRAW = 4


def _condition_rows(condition: str, real: Sequence[Record], synthetic: Sequence[Record]) -> list[Record]:
    return {REAL: list(real), SYNTHETIC: list(synthetic), SYNTHETIC_REAL: [*synthetic, *real]}[condition]


def _summary(runs: list[dict[str, Any]], labels: Sequence[str]) -> dict[str, Any]:
    return {
        "macro_f1": mean_spread([r["macro_f1"] for r in runs]),
        "accuracy": mean_spread([r["accuracy"] for r in runs]),
        "per_label_f1": {label: float(np.mean([r["per_label_f1"][label] for r in runs])) for label in labels},
        "runs": runs,
    }


class EvalRun:
    """Scores one run's rows on the real validation set. Deterministic for the spec's seeds."""

    def __init__(self, spec: EvalSpec, labels: Sequence[str], real_train: Sequence[Record], validation: Sequence[Record],
                 *, embedder: Embedder | None = None, seed: int = 0) -> None:
        self.spec = spec
        self.labels = list(labels)
        self.real_train = list(real_train)
        self.embedder = embedder or Embedder()
        rows = sorted(validation, key=lambda r: r.id)
        if spec.max_validation and len(rows) > spec.max_validation:
            rows = random.Random(f"{seed}/validation").sample(rows, spec.max_validation)
        self.validation = rows
        self.gold = [r.label or "" for r in rows]
        self.seed = seed

    def fingerprint(self) -> str:
        """A short hash of the scored rows' ids: two runs' scores compare only where it is the same."""
        return hashlib.sha256("\n".join(r.id for r in self.validation).encode()).hexdigest()[:16]

    def _evaluator(self, name: str):  # noqa: ANN202 - an Evaluator
        from factory.eval.evaluators import build_evaluator

        return build_evaluator(name, self.spec.params.get(name), self.embedder)

    def _predict(self, evaluator, train: Sequence[Record], seed: int, save_to: Path | None = None) -> list[str]:  # noqa: ANN001
        if not train:
            return []
        return evaluator.predict(train, self.validation, self.labels, seed=seed,
                                 save_to=str(save_to) if save_to else None).predicted

    def headline(self, name: str, synthetic: Sequence[Record], save_dir: Path | None = None) -> dict[str, Any]:
        """Every condition and seed for one evaluator, with the gain of synthetic+real over real."""
        evaluator = self._evaluator(name)
        predictions: dict[str, list[list[str]]] = {c: [] for c in CONDITIONS}
        started = time.perf_counter()
        for seed in self.spec.seeds:
            for condition in CONDITIONS:
                save_to = save_dir / f"{name}-seed{seed}" if save_dir and condition == SYNTHETIC_REAL else None
                preds = self._predict(evaluator, _condition_rows(condition, self.real_train, synthetic), seed, save_to)
                if preds:
                    predictions[condition].append(preds)
            log.info("eval %s seed %s done", name, seed)
        result: dict[str, Any] = {"seconds": round(time.perf_counter() - started, 1)}
        for condition, runs in predictions.items():
            if runs:
                result[condition] = _summary([scores(p, self.gold, self.labels) for p in runs], self.labels)
        if predictions[REAL] and predictions[SYNTHETIC_REAL]:
            result["gain"] = paired_gain_ci(predictions[SYNTHETIC_REAL], predictions[REAL], self.gold, self.labels,
                                            resamples=self.spec.bootstrap, seed=self.seed)
        return result

    def real_draws(self) -> list[list[Record]] | None:
        """One draw of the real training rows per seed (three quarters of each label's rows, without replacement), or
        None when some label has fewer than MIN_ROWS_TO_DRAW: then every run trains on all of them."""
        by_label: dict[str, list[Record]] = {}
        for row in sorted(self.real_train, key=lambda r: r.id):
            by_label.setdefault(row.label or "", []).append(row)
        if not by_label or min(len(rows) for rows in by_label.values()) < MIN_ROWS_TO_DRAW:
            return None
        return [[r for _, rows in sorted(by_label.items())
                 for r in random.Random(f"{self.seed}/draw/{seed}").sample(rows, max(2, len(rows) * 3 // 4))]
                for seed in self.spec.seeds]

    def ablation(self, stages: Sequence[tuple[str, Sequence[Record]]]) -> list[dict[str, Any]]:
        """The linear evaluator on the data as it stood after each stage: which filter helped, which hurt.

        A linear probe is deterministic, so its seeds alone show no spread at all; each seed's run therefore
        trains on its own draw of the real training rows (where there are enough), and each stage's change is
        judged by a paired interval over the validation rows and those draws (`change`, `verdict`)."""
        evaluator = self._evaluator(LINEAR)
        draws = self.real_draws() or [self.real_train] * len(self.spec.seeds)
        table: list[dict[str, Any]] = []
        previous: tuple[float, list[list[str]]] | None = None
        for stage, rows in stages:
            entry: dict[str, Any] = {"stage": stage, "rows": len(rows)}
            runs: dict[str, list[list[str]]] = {}
            for condition in ("synthetic", SYNTHETIC_REAL):
                runs[condition] = [self._predict(evaluator, _condition_rows(condition, real, rows), seed)
                                   for seed, real in zip(self.spec.seeds, draws)] if rows else []
                entry[condition] = (mean_spread([scores(p, self.gold, self.labels)["macro_f1"] for p in runs[condition]])
                                    if runs[condition] else None)
            current = entry[SYNTHETIC_REAL]["mean"] if entry[SYNTHETIC_REAL] else None
            entry["delta"] = None if previous is None or current is None else current - previous[0]
            if entry["delta"] is not None and previous is not None:
                entry["change"] = paired_gain_ci(runs[SYNTHETIC_REAL], previous[1], self.gold, self.labels,
                                                 resamples=self.spec.bootstrap, seed=self.seed, resample_runs=True)
                entry["verdict"] = verdict(entry["change"])
            if current is not None:
                previous = (current, runs[SYNTHETIC_REAL])
            table.append(entry)
        return table


ADVICE_WHEN_HURT = (
    "Train on the real rows alone until a change helps. To try next: another way of making rows (grounding.mode: "
    "annotate labels your own unlabelled text, topic writes new text about it); weigh or filter doubtful rows (a "
    "`weight` or `confidence` stage, with `auto: true` so that each build judges it on your real training rows); "
    "another generator (`factory compare`: a model that can read your labels); fewer rows per label.")


def hurt_warning(results: dict[str, Any]) -> str | None:
    """A warning when training on synthetic + real rows scored below real rows alone, with a paired interval below zero
    (for any evaluator): the first thing the terminal, the card and the report say. None otherwise."""
    hurt = [(name, scored) for name, scored in results["evaluators"].items()
            if scored.get("gain") and scored["gain"]["ci_high"] < 0]
    if not hurt:
        return None
    said = "; ".join(
        f"{name}: synthetic + real {scored[SYNTHETIC_REAL]['macro_f1']['mean']:.3f} against real only "
        f"{scored[REAL]['macro_f1']['mean']:.3f} (gain {scored['gain']['gain']:+.3f}, 95% interval "
        f"{scored['gain']['ci_low']:+.3f} to {scored['gain']['ci_high']:+.3f})" for name, scored in hurt)
    return f"These rows made the classifier WORSE on your real validation rows. {said}. {ADVICE_WHEN_HURT}"


def check_gate(spec: EvalSpec, results: dict[str, Any]) -> dict[str, Any]:
    """Did the run reach the recipe's minimum gain / score? No gate: it passes."""
    gate = spec.gate
    if gate is None:
        return {"passed": True, "checks": []}
    scored = results["evaluators"].get(gate.evaluator, {})
    checks = []
    if gate.min_gain is not None:
        measured = scored.get("gain", {}).get("gain")
        checks.append({"check": "min_gain", "evaluator": gate.evaluator, "required": gate.min_gain, "measured": measured,
                       "passed": measured is not None and measured >= gate.min_gain})
    if gate.min_macro_f1 is not None:
        measured = scored.get(SYNTHETIC_REAL, {}).get("macro_f1", {}).get("mean")
        checks.append({"check": "min_macro_f1", "evaluator": gate.evaluator, "required": gate.min_macro_f1,
                       "measured": measured, "passed": measured is not None and measured >= gate.min_macro_f1})
    return {"passed": all(c["passed"] for c in checks), "checks": checks}


def evaluate(spec: EvalSpec, labels: Sequence[str], real_train: Sequence[Record], validation: Sequence[Record],
             stages: Sequence[tuple[str, Sequence[Record]]], *, embedder: Embedder | None = None, seed: int = 0,
             save_dir: Path | None = None) -> dict[str, Any]:
    """The eval section of the manifest. `stages` ends with the final dataset."""
    run = EvalRun(spec, labels, real_train, validation, embedder=embedder, seed=seed)
    final = stages[-1][1]
    names = list(dict.fromkeys([*spec.evaluators, *([spec.gate.evaluator] if spec.gate else [])]))
    results: dict[str, Any] = {
        "validation_rows": len(run.validation), "validation_sample": run.fingerprint(),
        "real_train_rows": len(run.real_train), "synthetic_rows": len(final),
        "seeds": spec.seeds, "evaluators": {name: run.headline(name, final, save_dir) for name in names},
    }
    if spec.ablation:
        results["ablation"] = run.ablation(stages)
        results["ablation_draws"] = run.real_draws() is not None
    results["gate"] = check_gate(spec, results)
    results["warning"] = hurt_warning(results)
    return results
