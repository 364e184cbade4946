"""A run directory belongs to one recipe: run.json says which, and a build of another is refused.

Editing a recipe between builds is everyday work and keeps its run directory (the cache answers what
did not change). Building a *different* recipe (another name) into the same folder would replace its
dataset, card and manifest and mix two recipes' rows in generated.jsonl: it is refused, unless the user
says `--force`, which clears that run's files (the request cache stays: keys never collide across
recipes, and it may still answer a later build) and says what it replaced.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from factory.errors import FactoryError

log = logging.getLogger(__name__)

OWNER_FILE = "run.json"
KEPT_ON_REPLACE = ("requests.sqlite", "requests.sqlite-wal", "requests.sqlite-shm", ".lock")


def owner(run_dir: Path) -> dict[str, Any] | None:
    """Which recipe a run directory holds ({"recipe": name, "task": ..., "file": ...}), or None when unknown."""
    for name in (OWNER_FILE, "manifest.json"):
        path = run_dir / name
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("recipe" if name == OWNER_FILE else "name"), str):
            return data if name == OWNER_FILE else {"recipe": data["name"], "task": data.get("recipe", {}).get("task")}
    return None


def claim(run_dir: Path, recipe: str, task: str, source: Path | None, *, replace: bool = False) -> str | None:
    """Make `run_dir` this recipe's. Raises when it holds another recipe's run, unless `replace`: then
    that run's files go, and the description of what was replaced comes back."""
    held = owner(run_dir)
    replaced = None
    if held is not None and held["recipe"] != recipe:
        what = f"the run of recipe {held['recipe']!r}" + (f" ({held['task']})" if held.get("task") else "")
        if not replace:
            raise FactoryError(
                f"{run_dir} holds {what}, and this recipe is {recipe!r}: building it there would replace that run's "
                f"dataset, card and manifest and mix the two recipes' rows. Build into another folder (--out; the "
                f"default is runs/{recipe}), or pass --force to replace that run (its cached replies stay)")
        for path in run_dir.iterdir():
            if path.name not in KEPT_ON_REPLACE:
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        replaced = f"{what} in {run_dir}"
        log.warning("--force: replaced %s", replaced)
    if held is None:
        _hint_renamed(run_dir, source)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / OWNER_FILE).write_text(json.dumps({"recipe": recipe, "task": task, "file": str(source) if source else None})
                                      + "\n", encoding="utf-8")
    return replaced


def _hint_renamed(run_dir: Path, source: Path | None) -> None:
    """A new run directory for a recipe file that already has one under another name (the recipe was
    renamed): say where it is, since its cached replies are there."""
    if source is None or not run_dir.parent.is_dir():
        return
    for other in sorted(run_dir.parent.iterdir()):
        held = owner(other) if other.is_dir() and other != run_dir else None
        if held and held.get("file") == str(source):
            log.warning("%s was built before as recipe %r in %s; its cached replies are there: build with --out %s "
                        "to reuse them", source, held["recipe"], other, other)
