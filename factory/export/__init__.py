"""`export:` and `factory export`: a finished run's dataset written in the layouts fine-tuning tools read.

Files go to <run>/export/<format>/<split>.jsonl (<format>/<config>/<split>.jsonl for related tables),
each written atomically. The task kind turns a dataset row into a conversation (`Recipe.conversation`)
or into its own columns, or writes a layout of its own (`Recipe.export_example`); a kind without a
conversation (a table) exports only its columns, which the recipe's validation already enforced.
OpenAI examples that break its format rules are left out and counted by rule; a training file under
OpenAI's minimum is written but reported as a problem.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from factory.errors import FactoryError
from factory.export.formats import CHAT_LAYOUTS, OPENAI_MIN_EXAMPLES, dumps, openai_problems
from factory.records import DEFAULT_CONFIG
from factory.run.dataset import dataset_configs, dataset_files
from factory.run.manifest import load_manifest
from factory.run.store import RunStore, atomic_write_text
from factory.spec import ExportSpec
from factory.tasks import task_kind

EXPORT_DIR = "export"


def _rows(path: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()  # lists and structs as Python values (pandas would give numpy arrays)


def export_run(run_dir: Path, export: ExportSpec, recipe: dict[str, Any]) -> dict[str, Any]:
    """Write every format of `export` for the run in `run_dir` (built from `recipe`); what was written, per format."""
    run_dir = Path(run_dir)
    kind = task_kind(recipe["task"])
    refused = [f for f in export.formats if f not in kind.Spec.export_formats]
    if refused:
        raise FactoryError(f"a {recipe['task']!r} dataset cannot be exported as {', '.join(refused)}; "
                           f"it exports as: {', '.join(kind.Spec.export_formats)}")
    summary: dict[str, Any] = {}
    for fmt in export.formats:
        files: dict[str, str] = {}
        rows_out: dict[str, int] = {}
        left_out: Counter[str] = Counter()
        problems: list[str] = []
        for config in dataset_configs(run_dir):
            for split, parquet in dataset_files(run_dir, config).items():
                lines = []
                for row in _rows(parquet):
                    example = kind.export_example(fmt, row, recipe, export.system_prompt)
                    if example is None and fmt == "columns":
                        example = kind.export_columns(row)
                    elif example is None:
                        example = CHAT_LAYOUTS[fmt](kind.conversation(row, recipe), export.system_prompt)
                    broken = openai_problems(example, export.openai_max_tokens) if fmt == "openai" else []
                    if broken:
                        left_out.update(broken)
                        continue
                    lines.append(dumps(example))
                name = f"{split}.jsonl" if config == DEFAULT_CONFIG else f"{config}/{split}.jsonl"
                path = run_dir / EXPORT_DIR / fmt / name
                atomic_write_text(path, "".join(line + "\n" for line in lines))
                files[name.removesuffix(".jsonl")] = str(path.relative_to(run_dir))
                rows_out[name.removesuffix(".jsonl")] = len(lines)
        if fmt == "openai" and rows_out.get("train", 0) < OPENAI_MIN_EXAMPLES:
            problems.append(f"OpenAI fine-tuning needs at least {OPENAI_MIN_EXAMPLES} training examples; "
                            f"export/openai/train.jsonl has {rows_out.get('train', 0)}")
        summary[fmt] = {"files": files, "rows": rows_out, **({"left_out": dict(left_out)} if left_out else {}),
                        **({"problems": problems} if problems else {})}
    return {"formats": summary, "system_prompt": export.system_prompt}


def export_finished(run_dir: Path, **overrides: Any) -> dict[str, Any]:
    """`factory export`: the recipe's `export:` settings with `overrides` (formats, system_prompt, ...), written
    for a finished run and recorded in its manifest."""
    manifest = load_manifest(run_dir)
    settings = {**(manifest.recipe.get("export") or {}), **{k: v for k, v in overrides.items() if v is not None}}
    if "formats" not in settings:
        raise FactoryError("export needs --format (the run's recipe has no export: section)")
    try:
        export = ExportSpec.model_validate(settings)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        raise FactoryError(f"export {where}: {error['msg']}") from None
    with RunStore(run_dir) as store:  # the run's lock: no build writes the dataset meanwhile
        manifest.exports = export_run(run_dir, export, manifest.recipe)
        store.write_manifest(manifest)
    return manifest.exports


__all__ = ["EXPORT_DIR", "export_finished", "export_run"]
