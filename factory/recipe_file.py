"""Recipe files: load_recipe() reads YAML safely and validates it against the registered task kinds'
spec models, failing with the file, the field (and its line) and what was expected before any model
is called.

It lives apart from factory/spec.py because it needs the kinds' registry, and every kind imports
spec.py's shared models: kept together, the two made an import cycle.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Union

import yaml
from pydantic import Field, TypeAdapter, ValidationError

from factory.errors import RecipeError
from factory.generators.params import BACKENDS
from factory.secrets import looks_like_secret
from factory.spec import RecipeBase
from factory.tasks import TASKS


class _UniqueKeyLoader(yaml.SafeLoader):
    """Safe loader that refuses duplicate mapping keys (two labels with one name would silently merge)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key '{key}' (each name may appear once)", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _line_of(root: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the YAML node at `loc`, or of its deepest existing parent."""
    node, line = root, None
    for part in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == str(part)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            node = None
    return node.start_mark.line + 1 if node is not None else line


def _describe(error: dict[str, Any]) -> str:
    expected = error["msg"].removeprefix("Value error, ")
    if error["type"] == "value_error":
        return expected
    if error["type"] == "extra_forbidden":
        expected = "unknown key (check the spelling; see `factory validate --schema`)"
    elif error["type"] == "missing":
        expected = "required field is missing"
    elif "input" in error and error["type"] not in ("union_tag_invalid",):
        # A key pasted into the wrong field must not be printed back.
        secret = isinstance(error["input"], str) and looks_like_secret(error["input"])
        shown = "a value that looks like a key or token (not shown)" if secret else repr(error["input"])
        expected = f"{expected}; got {shown[:60]}"
    return expected


_BLAMED = re.compile(r"^[a-z_]+(?:\.[a-z_]+|\[\d+\])*(?=[: ])")


def _blamed_field(message: str, data: dict[str, Any]) -> tuple[Any, ...]:
    """("grounding", "mode") for "grounding.mode: ..." or "grounding.mode needs ...", when the recipe has
    that top-level key; () when the message does not start with one of its fields."""
    match = _BLAMED.match(message)
    path = tuple(int(p) if p.isdigit() else p for p in re.findall(r"[a-z_]+|\d+", match[0])) if match else ()
    return path if path and path[0] in data else ()


@cache
def _adapter() -> TypeAdapter[RecipeBase]:
    """One validator for every registered task kind, chosen by `task:`."""
    specs = tuple(kind.Spec for kind in TASKS.values())
    return TypeAdapter(Annotated[Union[specs], Field(discriminator="task")])  # type: ignore[valid-type]


def parse_recipe(data: Any, path: str = "<recipe>", root: yaml.Node | None = None) -> RecipeBase:
    """Validate already-loaded recipe data, raising RecipeError with field paths (and lines)."""
    if not isinstance(data, dict):
        raise RecipeError(path, [f"the file must be a YAML mapping of recipe fields, got {type(data).__name__}"])
    tasks = tuple(TASKS)
    if "task" not in data:
        raise RecipeError(path, ["task: required field is missing; expected " + " or ".join(repr(t) for t in tasks)])
    try:
        return _adapter().validate_python(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            # pydantic puts the union tag (e.g. 'classification', 'openai') into the path: drop it.
            loc = tuple(p for p in error["loc"] if p not in tasks
                        and not (isinstance(p, str) and (p in BACKENDS or p.startswith("function-"))))
            loc = tuple(p for p in loc if not (isinstance(p, str) and "[" in p))
            described = _describe(error)
            blamed = () if loc else _blamed_field(described, data)
            field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".") or "(top level)"
            line = _line_of(root, loc or blamed)
            where = f"line {line}: " if line else ""
            # A check across fields names the field it blames first: the line is that field's.
            problems.append(f"{where}{described}" if blamed else f"{where}{field}: {described}")
        raise RecipeError(path, problems) from None


def load_recipe(path: str | Path) -> RecipeBase:
    """Read and validate a recipe file with a safe YAML loader. Raises RecipeError on any problem."""
    path = Path(path)
    try:
        source = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RecipeError(str(path), [f"cannot read the file: {exc.strerror or exc}"]) from None
    try:
        root = yaml.compose(source, Loader=_UniqueKeyLoader)
        data = yaml.load(source, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = exc.problem or str(exc)
        if "could not determine a constructor" in problem:
            problem += " (tags such as !!python/... are refused: recipes are read with a safe loader)"
        raise RecipeError(str(path), [f"{where}{problem}"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise RecipeError(str(path), [f"{where}YAML syntax error: {problem}"]) from None
    spec = parse_recipe(data, str(path), root)
    spec._base_dir = path.resolve().parent
    spec._source = path.resolve()
    return spec


def recipe_of_run(run_dir: str | Path) -> RecipeBase:
    """The recipe a run was built from, as its manifest holds it (resolved, overrides included), with the
    folder its relative paths start from and the file it was read from."""
    from factory.run.claim import owner
    from factory.run.manifest import load_manifest

    run_dir = Path(run_dir)
    manifest = load_manifest(run_dir)
    spec = parse_recipe(manifest.recipe, str(run_dir / "manifest.json"))
    spec._base_dir = Path(manifest.recipe_dir)
    held = owner(run_dir) or {}
    spec._source = Path(held["file"]) if held.get("file") else None
    return spec


def recipe_schema() -> dict[str, Any]:
    """JSON schema of recipe files, generated from the pydantic models."""
    return _adapter().json_schema()
