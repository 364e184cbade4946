"""`factory eval RUN_DIR`: re-score a finished run without regenerating anything."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from factory.data.real import real_split, split_seed
from factory.embeddings import Embedder
from factory.errors import FactoryError
from factory.eval.runner import evaluate
from factory.recipe_file import recipe_of_run
from factory.records import Record
from factory.run.manifest import load_manifest
from factory.run.store import RunStore, stage_rows
from factory.spec import EvalSpec


def rescore(run_dir: Path, *, evaluators: list[str] | None = None, seeds: list[int] | None = None) -> dict[str, Any]:
    """Re-run the eval stage of `run_dir` and store the scores in its manifest. Returns the eval section.

    The card and the report are the caller's to rewrite (`factory.report.write_documents`).
    """
    run_dir = Path(run_dir)
    manifest = load_manifest(run_dir)
    spec = recipe_of_run(run_dir)
    recipe_eval = spec.evaluation()
    if spec.real_rows() is None:
        raise FactoryError(f"{run_dir}: the recipe has no real_data, so there are no real validation rows to score on")
    overrides = {k: v for k, v in (("evaluators", evaluators), ("seeds", seeds)) if v}
    try:
        eval_spec = EvalSpec.model_validate({**(recipe_eval.model_dump() if recipe_eval else {}), **overrides})
    except ValidationError as exc:
        raise FactoryError(f"invalid eval options: {exc.errors()[0]['msg']}") from None
    real = real_split(spec)
    stages = _stages(run_dir)
    with RunStore(run_dir) as store:
        by_id = {r.id: r for r in store.records()}
        missing = [i for ids in stages.values() for i in ids if i not in by_id]
        if missing:
            raise FactoryError(f"{run_dir}: {len(missing)} rows named in stages.json are not in generated.jsonl")
        staged: list[tuple[str, list[Record]]] = list(stage_rows(run_dir, by_id).items())
        embedder = Embedder(cache=run_dir / "embeddings.sqlite")
        results = evaluate(eval_spec, list(spec.buckets()), real.train, real.validation, staged, seed=split_seed(spec),
                           embedder=embedder, save_dir=run_dir / "models" if eval_spec.save_models else None)
        manifest.eval = results
        manifest.passing = results["gate"]["passed"]
        store.write_manifest(manifest)
    return results


def _stages(run_dir: Path) -> dict[str, list[str]]:
    path = run_dir / "stages.json"
    if not path.exists():
        raise FactoryError(f"{run_dir}: stages.json is missing; build the run again with this version to re-score it")
    return json.loads(path.read_text(encoding="utf-8"))
