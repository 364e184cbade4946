"""The dependency rule of README's "How it is built", checked on the source: nothing renders or
publishes from inside the build, eval never imports the builder, filters never import an evaluator,
and no module outside the task kinds tests which kind a recipe is."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

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


def test_only_task_kinds_name_their_spec_classes() -> None:
    kinds = ("ClassificationSpec", "InstructionSpec")
    outside = [str(path.relative_to(PACKAGE.parent)) for path in sorted(PACKAGE.rglob("*.py"))
               if "tasks" not in path.parts and path.name != "__init__.py" and any(k in path.read_text() for k in kinds)]
    assert outside == []
