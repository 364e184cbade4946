"""`checks:`, rules across a table's columns, in a small expression language that is never executed as Python.

An expression is parsed by Python's `ast` module and only a short list of node types is accepted
(comparisons, `and`/`or`/`not`, arithmetic, column names, literals, lists for `in`, and the functions
below); it is then evaluated by this module's own interpreter, which has no access to anything else.

Two kinds of check:
- **row checks** hold for every row: `price > 0`, `bedrooms >= 1 or kind == "studio"`,
  `year(sold) >= year(built)`. A row that breaks one is refused (`broken_check`). A check whose
  values are null is not broken (as in SQL: unknown is not false).
- **table checks** hold for the table as a whole and use aggregates: `spearman(size_m2, price) >= 0.5`,
  `mean(price) < 900000`, `distinct(city) >= 5`, `share(garden) >= 0.3`.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from factory.tables.schema import day_numbers

if TYPE_CHECKING:  # pandas loads when a whole-table check is measured, not when a recipe is validated
    import pandas as pd

_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge, ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
}
_ARITH: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
}
# Functions of one row's values.
ROW_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": abs, "len": len, "lower": str.lower, "upper": str.upper, "round": round,
    "year": lambda d: int(str(d)[:4]), "month": lambda d: int(str(d)[5:7]), "day": lambda d: int(str(d)[8:10]),
    "min": min, "max": max,
}
# Functions of whole columns (they make a check a table check); each takes column names.
TABLE_FUNCTIONS: dict[str, tuple[int, Callable[..., float]]] = {
    "spearman": (2, lambda a, b: _numeric(a).corr(_numeric(b), method="spearman")),
    "pearson": (2, lambda a, b: _numeric(a).corr(_numeric(b), method="pearson")),
    "mean": (1, lambda a: _numeric(a).mean()),
    "median": (1, lambda a: _numeric(a).median()),
    "std": (1, lambda a: _numeric(a).std()),
    "distinct": (1, lambda a: float(a.nunique(dropna=True))),
    "share": (1, lambda a: float(a.dropna().astype(bool).sum()) / len(a) if len(a) else math.nan),
    "nulls": (1, lambda a: float(a.isna().mean()) if len(a) else math.nan),
}


def _numeric(column: pd.Series) -> pd.Series:
    import pandas as pd

    if column.dtype == object:  # dates: compare by their ordinal
        days = day_numbers(column)
        if days.notna().any():
            return days
    return pd.to_numeric(column, errors="coerce").astype(float)


class _Unknown(Exception):
    """A null operand: the check is neither kept nor broken by this row."""


@dataclass(frozen=True)
class Check:
    """One validated expression: `holds(row)` for a row check, `measure(table)` for a table check."""

    text: str
    tree: ast.Expression = field(repr=False, compare=False)
    table_level: bool

    @classmethod
    def parse(cls, text: str, columns: Collection[str]) -> Check:
        """The check, or ValueError saying what is wrong and where (nothing is evaluated here)."""
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError as exc:
            raise ValueError(f"{text!r} is not an expression: {exc.msg} at column {exc.offset}") from None
        aggregates = _validate(tree.body, set(columns), inside_aggregate=False)
        if aggregates and _uses_bare_columns(tree.body):
            raise ValueError(f"{text!r} mixes whole-column functions ({', '.join(sorted(aggregates))}) with a row's values; "
                             "a check is either about each row or about the whole table")
        return cls(text.strip(), tree, bool(aggregates))

    def holds(self, row: Mapping[str, Any]) -> bool:
        """Whether a row keeps this row check (True when a value it needs is null)."""
        try:
            return bool(_evaluate(self.tree.body, row.__getitem__))
        except _Unknown:
            return True
        except (TypeError, ValueError, ZeroDivisionError, ArithmeticError):
            return False

    def measure(self, table: pd.DataFrame) -> tuple[bool, dict[str, float]]:
        """Whether the table keeps this table check, and the value of each aggregate in it (for the report)."""
        values: dict[str, float] = {}

        def column(name: str) -> pd.Series:
            return table[name]

        try:
            result = bool(_evaluate(self.tree.body, column, values))
        except (_Unknown, TypeError, ValueError, ZeroDivisionError, ArithmeticError):
            result = False
        return result, values


def parse_checks(texts: Sequence[str], columns: Collection[str]) -> list[Check]:
    return [Check.parse(text, columns) for text in texts]


def _validate(node: ast.AST, columns: set[str], inside_aggregate: bool) -> set[str]:
    """The aggregate functions `node` uses; ValueError for anything outside the language."""
    found: set[str] = set()
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.keywords:
            raise ValueError("only plain calls of the listed functions are allowed, e.g. spearman(size_m2, price)")
        name = node.func.id
        if name in TABLE_FUNCTIONS:
            if inside_aggregate:
                raise ValueError(f"{name}() cannot be nested in another whole-column function")
            arity = TABLE_FUNCTIONS[name][0]
            if len(node.args) != arity or not all(isinstance(a, ast.Name) for a in node.args):
                raise ValueError(f"{name}() takes {arity} column name{'s' if arity > 1 else ''}")
            for arg in node.args:
                _validate(arg, columns, True)
            return {name}
        if name not in ROW_FUNCTIONS:
            known = ", ".join(sorted({*ROW_FUNCTIONS, *TABLE_FUNCTIONS}))
            raise ValueError(f"unknown function {name}(); known: {known}")
        for arg in node.args:
            found |= _validate(arg, columns, inside_aggregate)
        return found
    if isinstance(node, ast.Name):
        if node.id not in columns:
            raise ValueError(f"unknown column {node.id!r}; columns: {', '.join(sorted(columns))}")
        return found
    if isinstance(node, ast.Constant):
        if not isinstance(node.value, (int, float, str, bool)) and node.value is not None:
            raise ValueError(f"literal {node.value!r} is not a number, string, true/false or null")
        return found
    allowed = (ast.BoolOp, ast.UnaryOp, ast.BinOp, ast.Compare, ast.List, ast.Tuple, ast.And, ast.Or, ast.Not,
               ast.USub, ast.UAdd, ast.Load, *_COMPARE, *_ARITH)
    if not isinstance(node, allowed):
        raise ValueError(f"{type(node).__name__} is not part of the check language "
                         "(comparisons, and/or/not, + - * / // %, column names, literals, listed functions)")
    for child in ast.iter_child_nodes(node):
        found |= _validate(child, columns, inside_aggregate)
    return found


def _uses_bare_columns(node: ast.AST) -> bool:
    """True when a column name appears outside every whole-column function."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in TABLE_FUNCTIONS:
        return False
    if isinstance(node, ast.Name):
        return True
    return any(_uses_bare_columns(child) for child in ast.iter_child_nodes(node))


def _evaluate(node: ast.AST, column: Callable[[str], Any], aggregates: dict[str, float] | None = None) -> Any:
    """The interpreter: only the node types `_validate` accepted reach it."""
    recurse = lambda child: _evaluate(child, column, aggregates)  # noqa: E731
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        value = column(node.id)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            raise _Unknown
        return value
    if isinstance(node, (ast.List, ast.Tuple)):
        return [recurse(e) for e in node.elts]
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            return all(recurse(v) for v in node.values)
        return any(recurse(v) for v in node.values)
    if isinstance(node, ast.UnaryOp):
        value = recurse(node.operand)
        return not value if isinstance(node.op, ast.Not) else -value if isinstance(node.op, ast.USub) else +value
    if isinstance(node, ast.BinOp):
        return _ARITH[type(node.op)](recurse(node.left), recurse(node.right))
    if isinstance(node, ast.Compare):
        left = recurse(node.left)
        for op, right_node in zip(node.ops, node.comparators):
            right = recurse(right_node)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.Call):
        name = node.func.id  # type: ignore[attr-defined]
        if name in TABLE_FUNCTIONS:
            names = [a.id for a in node.args]  # type: ignore[attr-defined]
            value = float(TABLE_FUNCTIONS[name][1](*(column(n) for n in names)))
            if aggregates is not None:
                aggregates[f"{name}({', '.join(names)})"] = round(value, 4) if math.isfinite(value) else value
            if math.isnan(value):
                raise _Unknown
            return value
        return ROW_FUNCTIONS[name](*(recurse(a) for a in node.args))
    raise ValueError(f"{type(node).__name__} cannot be evaluated")  # unreachable after _validate
