"""The dependency rule of docs/architecture.md, checked on the source: nothing renders or
publishes from inside the build, eval never imports the builder, filters never import an evaluator,
and no module outside the task kinds names a kind, its classes, its recipe fields or its row columns."""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from factory.tasks.base import Recipe

PACKAGE = Path(__file__).resolve().parents[1] / "factory"
FORBIDDEN = {
    "builder": ("factory.report", "factory.publish", "factory.comparison", "factory.api"),
    "eval": ("factory.builder", "factory.api", "factory.report", "factory.publish"),
    "filters": ("factory.eval", "factory.builder", "factory.report"),
    "run": ("factory.builder", "factory.report", "factory.publish", "factory.tasks"),
    "tasks": ("factory.builder", "factory.report", "factory.publish", "factory.run"),
}


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_dependencies_point_one_way(package: str) -> None:
    bad = [f"{path.relative_to(PACKAGE.parent)} imports {name}"
           for path in sorted((PACKAGE / package).glob("*.py")) for name in imports(path)
           if name.startswith(FORBIDDEN[package])]
    assert bad == []


# Where a module outside the kinds may name a kind's column, and why.
ALLOWED = {
    # generated.jsonl written before rows carried their fields (2026-12-02) held only these two shapes;
    # reading it keeps such runs resumable.
    ("factory/records.py", "instruction"), ("factory/records.py", "response"),
    # The Hub card's language codes (the recipe's hub.language), not the code kind's `language` column.
    ("factory/report/card.py", "language"),
    # A compared row's rejection reason (every kind's rows can be rejected), not a preference pair's column.
    ("factory/comparison/render.py", "rejected"),
    # The rows a reviewer rejected (manifest.review), not a preference pair's column.
    ("factory/report/card.py", "rejected"),
    # The Batch API's result lines carry a `response` and an error `code` (OpenAI's protocol), not the
    # instruction and code kinds' columns.
    ("factory/generators/openai_batch.py", "response"), ("factory/generators/openai_batch.py", "code"),
}
SPECISH = {"spec", "recipe", "resolved"}  # how the code names a recipe (a spec model, or its resolved dict)


def _owned_names() -> tuple[dict[str, str], dict[str, str], dict[str, str], dict[str, str]]:
    """For every registered kind: its `task:` value, its class names, its own recipe fields and its own
    row columns, each mapped to the kinds that own it (comma-separated). Shared names (RecipeBase's
    fields, a record's text and label) are no kind's."""
    from factory.records import Record
    from factory.spec import RecipeBase
    from factory.tasks import TASKS
    from factory.tasks.base import Recipe

    shared = set(RecipeBase.model_fields) | set(dir(RecipeBase)) | set(dir(Recipe)) | set(dir(Record)) | {"label"}
    def owners(names_of: Callable[[type[Recipe]], Iterable[str]]) -> dict[str, str]:
        owned: dict[str, list[str]] = {}
        for kind in TASKS.values():
            for name in dict.fromkeys(names_of(kind)):
                if name not in shared:
                    owned.setdefault(name, []).append(kind.kind)
        return {name: ", ".join(kinds) for name, kinds in owned.items()}

    return (owners(lambda k: [k.kind]), owners(lambda k: [k.__name__, k.Spec.__name__]),
            owners(lambda k: k.Spec.model_fields), owners(lambda k: [*k.columns, *k.answer_fields]))


def _constant(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _tested_constants(node: ast.AST) -> list[str]:
    """String constants a node tests for or looks up: compared (`== "table"`, `in ("a", "b")`),
    used as a key (`x["response"]`, `x.get("response")`) or passed to task_kind()."""
    if isinstance(node, ast.Compare):
        found = []
        for side in (node.left, *node.comparators):
            parts = side.elts if isinstance(side, (ast.Tuple, ast.List, ast.Set)) else [side]
            found += [c for c in map(_constant, parts) if c]
        return found
    if isinstance(node, ast.Subscript):
        return [c] if (c := _constant(node.slice)) else []
    if isinstance(node, ast.Call) and node.args and isinstance(node.func, (ast.Attribute, ast.Name)):
        name = node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id
        if name in ("get", "pop", "task_kind"):
            return [c] if (c := _constant(node.args[0])) else []
    return []


def _names_a_recipe(node: ast.AST) -> bool:
    return (isinstance(node, ast.Name) and node.id in SPECISH) or (isinstance(node, ast.Attribute) and node.attr in SPECISH)


def kind_names_in(source: str) -> list[tuple[int, str, str]]:
    """(line, name, kind) for each place `source` names a registered kind, its classes, fields or columns."""
    kinds, classes, fields, columns = _owned_names()
    found = []
    for node in ast.walk(ast.parse(source)):
        line = getattr(node, "lineno", 0)
        for value in _tested_constants(node):
            if value in kinds or value in columns:
                found.append((line, value, ", ".join(filter(None, (kinds.get(value), columns.get(value))))))
            elif value in fields and (_names_a_recipe(getattr(node, "value", None) or getattr(getattr(node, "func", None), "value", None))):
                found.append((line, value, fields[value]))
        if isinstance(node, ast.Name) and node.id in classes:
            found.append((line, node.id, classes[node.id]))
        elif isinstance(node, ast.alias) and node.name.rsplit(".", 1)[-1] in classes:
            found.append((line, node.name, classes[node.name.rsplit(".", 1)[-1]]))
        elif isinstance(node, ast.Attribute) and node.attr in fields and _names_a_recipe(node.value):
            found.append((line, node.attr, fields[node.attr]))
    return found


def kind_libraries() -> set[str]:
    """Packages that only the kinds import (factory/code for the code kind's verification, factory/tables for
    the table kind's checks): a kind's private library, part of the kind, may name it."""
    importers: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        for name in imports(path):
            if name.startswith("factory."):
                importers.setdefault(name.split(".")[1], set()).add(path.relative_to(PACKAGE).parts[0])
    return {package for package, users in importers.items()
            if (PACKAGE / package).is_dir() and package != "tasks" and users <= {"tasks", package}}


def test_no_module_outside_the_kinds_names_one() -> None:
    """A kind's name, classes, recipe fields and row columns belong to its module: the build, filters, eval,
    card, report and CLI ask the kind (tasks/base.py's contract) instead of testing which kind it is."""
    private = kind_libraries()
    assert private, "no package is private to the kinds: check kind_libraries()"
    outside = [f"{rel}:{line}: {name!r} ({kind})" for path in sorted(PACKAGE.rglob("*.py"))
               if not {"tasks", *private} & set(path.relative_to(PACKAGE).parts[:1])
               for rel in [str(path.relative_to(PACKAGE.parent))]
               for line, name, kind in kind_names_in(path.read_text(encoding="utf-8")) if (rel, name) not in ALLOWED]
    assert outside == []


@pytest.mark.parametrize("snippet", [
    'if spec.task == "{kind}":\n    pass', 'x = task_kind("{kind}")', 'from factory.tasks import {cls}',
    'y = isinstance(spec, {cls})', 'z = spec.{field}', 'w = recipe["{field}"]', 'v = row.get("{column}")',
])
def test_the_layout_check_sees_every_kind(snippet: str) -> None:
    """The check above fails for each way of naming each registered kind (a kind added later included)."""
    from factory.tasks import TASKS

    kinds, classes, fields, columns = _owned_names()
    for kind in TASKS.values():
        own = {"kind": kind.kind, "cls": kind.Spec.__name__,
               "field": next((f for f, k in fields.items() if kind.kind in k.split(", ")), None),
               "column": next((c for c, k in columns.items() if kind.kind in k.split(", ")), None)}
        needed = [part for part in ("field", "column") if "{" + part + "}" in snippet]
        if any(own[part] is None for part in needed):
            continue  # this kind has no field (or column) of its own to name
        source = snippet.format(**own)
        assert [k for *_, k in kind_names_in(source) if kind.kind in k.split(", ")] != [], source
