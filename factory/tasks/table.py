"""The table kind: rows of a typed schema, written by the model in batches (`rows`) or by a program it
writes, run in the sandbox (`program`); or several tables joined by keys (`related`), parents first.

Every row is type- and constraint-checked against the schema and the recipe's row checks; a bad
row is a rejected row with its reason. Whole-table checks and, with a real table, fidelity
(SDMetrics) and distance to the closest real row are measured on the final table and go into the
manifest's `kind_report`.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from factory.filters import TABLE
from factory.filters.params import ExactDedupParams
from factory.records import DEFAULT_CONFIG, STAGE_PARSE, Completion, Message, Prompt, Record, Rejected
from factory.sandbox import Limits
from factory.spec import RecipeBase, Strict
from factory.tables.checks import Check, parse_checks
from factory.tables.program import ProgramAttempts
from factory.tables.schema import ColumnSpec, RowProblem, check_row, coerce_value
from factory.tasks.base import Recipe, template
from factory.text import extract_json

if TYPE_CHECKING:
    from factory.corpus.selection import PassagePicker

BUCKET = "all"
PROGRAM = "program.py"
FOREIGN_KEYS = "foreign_keys"  # the stage of the final integrity check (funnel, rejected rows)
KEYS_SHOWN = 40  # parent keys offered in one child prompt


class TableRealSpec(Strict):
    """The user's real table: the fidelity report compares with it and the leakage filter guards it."""

    path: str = Field(description="csv, jsonl or parquet file (relative to the recipe); hf:owner/name for a Hub dataset; "
                                  "package:DIST/path for a file shipped in an installed distribution.")
    split: str = Field("train", description="Split to read from a Hub dataset.")
    max_rows: int | None = Field(None, ge=1, description="Read at most this many rows (a seeded sample).")


class ProgramSpec(Strict):
    """method: program — the model writes `make_table(n_rows, seed)`; it runs in the sandbox."""

    repair_rounds: int = Field(3, ge=0, le=10, description="Times a failing program goes back to the model with its errors.")
    attempts: int = Field(2, ge=1, le=20, description="Fresh programs to try, each with its repair rounds, before the build gives up.")
    seconds: float = Field(60, gt=0, le=3600, description="Wall-clock limit of one run of the program.")
    memory_mb: int = Field(2048, ge=256, description="Address-space limit of one run of the program, in MiB.")


class TableDef(Strict):
    """One table of a `related` recipe: its columns, size, keys and checks."""

    description: str = Field("", description="What the table holds (goes into its prompts).")
    rows: int = Field(ge=1, description="Rows wanted AFTER filtering.")
    columns: dict[str, ColumnSpec] = Field(min_length=1, description="Column name -> type, description and constraints.")
    primary_key: str | None = Field(None, description="The column that identifies a row (unique, never null).")
    foreign_keys: dict[str, str] = Field(
        default_factory=dict, description="column -> 'table.column': each value must be a key of that (parent) table.")
    checks: list[str] = Field(default_factory=list, description="Rules across this table's columns (see `checks`).")
    examples: list[dict[str, Any]] = Field(default_factory=list, description="Example rows of this table.")

    @model_validator(mode="after")
    def _keys(self) -> TableDef:
        _check_table(self.columns, self.checks, self.examples)
        if self.primary_key is not None:
            if self.primary_key not in self.columns:
                raise ValueError(f"primary_key {self.primary_key!r} is not a column; columns: {', '.join(self.columns)}")
            key = self.columns[self.primary_key]
            key.unique, key.nullable = True, False
        for column in self.foreign_keys:
            if column not in self.columns:
                raise ValueError(f"foreign_keys: {column!r} is not a column of this table")
        return self


def _check_table(columns: dict[str, ColumnSpec], checks: list[str], examples: list[dict[str, Any]]) -> None:
    """ValueError naming the first bad column name, check or example row of one table."""
    bad = [name for name in columns if not name.isidentifier()]
    if bad:
        raise ValueError(f"column names are letters, digits and _ (not starting with a digit), so that checks can "
                         f"name them; got {', '.join(map(repr, bad))}")
    for index, text in enumerate(checks):
        try:
            Check.parse(text, columns)
        except ValueError as exc:
            raise ValueError(f"checks[{index}]: {exc}") from None
    for index, example in enumerate(examples):
        problem = check_row(columns, example)
        if isinstance(problem, RowProblem):
            raise ValueError(f"examples[{index}]: {problem.reason}: {problem.detail}")


class TableSpec(RecipeBase):
    """A recipe that makes a table: typed columns with constraints, checks across columns, a row count."""

    row_shape: ClassVar[str] = TABLE
    export_formats: ClassVar[tuple[str, ...]] = ("columns",)
    size_flag: ClassVar[str | None] = "--count"

    task: Literal["table"]
    method: Literal["rows", "program", "related"] = Field(
        "rows", description="rows: the model writes rows as JSON, batch_rows per request. program: the model writes a "
                            "Python program that makes the table; it runs in the sandbox, failures go back for repair. "
                            "related: several `tables:` joined by keys, written as rows, parents before children.")
    columns: dict[str, ColumnSpec] = Field(default_factory=dict, description="Column name -> type, description and constraints, in order.")
    tables: dict[str, TableDef] = Field(default_factory=dict, description="method related: the tables, by name.")
    rows: int = Field(100, ge=1, description="Rows wanted AFTER filtering.")
    batch_rows: int = Field(10, ge=1, le=200, description="method rows: rows asked for in one request.")
    checks: list[str] = Field(
        default_factory=list,
        description="Rules across columns, e.g. 'price > 0' (each row) or 'spearman(size_m2, price) >= 0.5' (the table); "
                    "see factory/tables/checks.py for the language. Never executed as Python.")
    examples: list[dict[str, Any]] = Field(default_factory=list, description="Example rows, sampled into prompts (method rows).")
    program: ProgramSpec = Field(default_factory=ProgramSpec, description="method program: repair rounds and sandbox limits.")
    real_data: TableRealSpec | None = Field(None, description="A real table to measure fidelity against and to guard from copies.")

    # Field validators, so that an error names the field and its line (a `tables:` entry checks its own).
    @field_validator("columns")
    @classmethod
    def _names(cls, columns: dict[str, ColumnSpec]) -> dict[str, ColumnSpec]:
        _check_table(columns, [], [])
        return columns

    @field_validator("checks")
    @classmethod
    def _parse_checks(cls, checks: list[str], info: ValidationInfo) -> list[str]:
        _check_table(info.data.get("columns") or {}, checks, [])
        return checks

    @field_validator("examples")
    @classmethod
    def _check_examples(cls, examples: list[dict[str, Any]], info: ValidationInfo) -> list[dict[str, Any]]:
        _check_table(info.data.get("columns") or {}, [], examples)
        return examples

    @model_validator(mode="after")
    def _defaults(self) -> TableSpec:
        if self.generate.per_label is not None or self.generate.count is not None:
            raise ValueError("generate.per_label and generate.count are for text recipes; a table recipe sets `rows:`")
        if self.splits is not None and self.method == "related":
            raise ValueError("splits: related tables are written whole (a split would cut rows from the parents their "
                             "keys point to)")
        if self.method == "related":
            if self.columns or self.checks or self.examples:
                raise ValueError("method related: columns, checks and examples go under each of `tables:`")
            if len(self.tables) < 2:
                raise ValueError("method related needs `tables:` with at least two tables")
            if self.real_data is not None:
                raise ValueError("real_data: the fidelity report compares one table; method related takes none")
            _check_keys(self.tables)
        else:
            if self.tables:
                raise ValueError(f"tables: only method related takes several tables (method is {self.method!r})")
            if not self.columns:
                raise ValueError("columns: a table recipe needs at least one column")
        unique = [f"{table}.{name}" if self.method == "related" else name
                  for table, definition in self.table_defs().items() for name, column in definition.columns.items() if column.unique]
        dedup = [f for f in self.filters if isinstance(f, ExactDedupParams)]
        if not dedup and (unique or not self.filters):  # unique columns always hold, whatever the chain says
            self.filters.insert(0, ExactDedupParams())
        for stage in self.filters:
            if isinstance(stage, ExactDedupParams) and stage.unique_columns is None:
                stage.unique_columns = unique
            elif isinstance(stage, ExactDedupParams):
                known = {f"{t}.{c}" if self.method == "related" else c for t, d in self.table_defs().items() for c in d.columns}
                unknown = sorted(set(stage.unique_columns or ()) - known)
                if unknown:
                    raise ValueError(f"filters: exact_dedup.unique_columns names unknown columns: {', '.join(unknown)}")
        return self

    def table_defs(self) -> dict[str, TableDef]:
        """The recipe's tables, parents before children: `tables:` for related, else the one table as BUCKET."""
        if self.method == "related":
            return self.tables
        return {BUCKET: TableDef.model_construct(description=self.description, rows=self.rows, columns=self.columns,
                                                 primary_key=None, foreign_keys={}, checks=self.checks, examples=self.examples)}

    def buckets(self) -> dict[str, int]:
        return {name: definition.rows for name, definition in self.table_defs().items()}

    def set_size(self, rows: int) -> None:
        if self.method == "related":
            raise ValueError("--count: a related recipe sets the rows of each of its tables")
        self.rows = rows

    @property
    def needs_sandbox(self) -> bool:
        return self.method == "program"

    def request_budget(self) -> int:
        if self.generate.max_requests:
            return self.generate.max_requests
        if self.method == "program":
            return self.program.attempts * (1 + self.program.repair_rounds)
        return sum(4 * math.ceil(rows / self.batch_rows) + 8 for rows in self.buckets().values())


def _check_keys(tables: dict[str, TableDef]) -> None:
    """Foreign keys name a parent's primary key, of the same type, and the tables are listed parents first."""
    order = list(tables)
    for name, definition in tables.items():
        for column, target in definition.foreign_keys.items():
            parent, _, key = target.partition(".")
            where = f"tables.{name}.foreign_keys.{column}"
            if parent not in tables or not key:
                raise ValueError(f"{where}: {target!r} is not 'table.column' of a table in this recipe ({', '.join(tables)})")
            if tables[parent].primary_key != key:
                raise ValueError(f"{where}: {target!r} must be the primary key of {parent!r} "
                                 f"({tables[parent].primary_key or 'it has none'})")
            if order.index(parent) >= order.index(name):
                raise ValueError(f"{where}: {parent!r} must be listed before {name!r} (parents are generated first)")
            if tables[parent].columns[key].type != definition.columns[column].type:
                raise ValueError(f"{where}: a {definition.columns[column].type} column cannot hold {target}, "
                                 f"a {tables[parent].columns[key].type}")


class TableRecipe(Recipe[TableSpec]):
    """Prompts for table rows (per table, for related tables) or a table program; replies checked row
    by row against the schema, the row checks and the parents' keys."""

    kind = "table"
    Spec: ClassVar[type[TableSpec]] = TableSpec
    task_categories: ClassVar[tuple[str, ...]] = ("tabular-classification", "tabular-regression")
    columns: ClassVar[tuple[str, ...]] = ()  # the recipe's own: see `fields`

    def __init__(self, spec: TableSpec, real_train: Sequence[Record] = (), passages: PassagePicker | None = None) -> None:
        super().__init__(spec, real_train, passages)
        self.defs = spec.table_defs()
        checks = {name: parse_checks(d.checks, d.columns) for name, d in self.defs.items()}
        self.row_checks = {name: [c for c in found if not c.table_level] for name, found in checks.items()}
        self.table_checks = {name: [c for c in found if c.table_level] for name, found in checks.items()}
        # A parent table's keys, fixed once it has its rows: its children's prompts offer them, and
        # a child row naming another key is an orphan.
        self.keys: dict[str, list[Any]] = {}
        self.parents = {(name, column): target.split(".")[0] for name, d in self.defs.items() for column, target in d.foreign_keys.items()}
        program = spec.method == "program"
        self.rows_per_request = spec.rows if program else spec.batch_rows
        self.requests_per_round = 1 if program else None  # a repair prompt needs the last attempt's errors
        self.programs = ProgramAttempts(spec.program.repair_rounds, Limits(seconds=spec.program.seconds, memory_mb=spec.program.memory_mb))
        self.real = read_real_table(spec)

    @classmethod
    def bucket(cls, record: Record) -> str:
        return str(record.meta.get("bucket", BUCKET))  # the table's name (BUCKET for a single table)

    @classmethod
    def fields(cls, record: Record) -> dict[str, Any]:
        return dict(record.fields)

    def dataset_row(self, record: Record) -> dict[str, Any]:
        return dict(record.fields)  # exactly the schema's columns; provenance stays in generated.jsonl

    def reference_rows(self) -> list[Record]:
        return [Record(row, id=f"real-{i}") for i, row in enumerate(self.real)]

    # -- prompts --------------------------------------------------------------------------------

    def _schema_text(self, table: str) -> tuple[str, str]:
        columns = "\n".join(f"- {name}: {column.describe()}" for name, column in self.defs[table].columns.items())
        checks = "".join(f"- {text}\n" for text in self.defs[table].checks)
        return columns, ("Rules that must hold:\n" + checks if checks else "")

    def _keys_text(self, table: str, rng: random.Random) -> str:
        """The parent keys a child table's rows may use (a seeded sample of at most KEYS_SHOWN per column)."""
        lines = []
        for column, target in self.defs[table].foreign_keys.items():
            keys = self.keys[target.split(".")[0]]
            shown = keys if len(keys) <= KEYS_SHOWN else rng.sample(keys, KEYS_SHOWN)
            lines.append(f"- {column} must be one of these {target} values: {json.dumps(shown, ensure_ascii=False, default=str)}")
        return "Keys:\n" + "\n".join(lines) + "\n" if lines else ""

    def waiting(self, bucket: str) -> bool:
        return any(self.keys.get(parent) is None for (table, _), parent in self.parents.items() if table == bucket)

    def observe(self, kept: Sequence[Record]) -> None:
        """Fix a parent table's keys once it has its rows: the first `rows` kept, as the final table will be."""
        for name in {parent for parent in self.parents.values()} - set(self.keys):
            definition = self.defs[name]
            rows = [r for r in kept if self.bucket(r) == name][: definition.rows]
            if len(rows) >= definition.rows:
                self.keys[name] = [r.fields[definition.primary_key] for r in rows]  # type: ignore[index]

    def reply_schema(self, table: str) -> dict[str, Any]:
        kinds = {"int": "integer", "float": "number", "bool": "boolean"}
        properties = {name: {"type": [kinds.get(c.type, "string"), "null"] if c.nullable else kinds.get(c.type, "string")}
                      for name, c in self.defs[table].columns.items()}
        row = {"type": "object", "properties": properties, "required": list(properties)}
        return {"type": "object", "properties": {"rows": {"type": "array", "items": row}}, "required": ["rows"]}

    def prompt(self, bucket: str, index: int, generator: str | None = None, focus: Sequence[str] = ()) -> Prompt:
        if self.spec.method == "program":
            return self._program_prompt(bucket, index, generator)
        rng = self.rng(bucket, index)
        axes = self.sample_axes(rng)
        definition = self.defs[bucket]
        shots = rng.sample(definition.examples, min(self.spec.generate.few_shot, len(definition.examples)))
        columns, checks = self._schema_text(bucket)
        examples = ("Example rows:\n" + "\n".join(json.dumps(s, ensure_ascii=False) for s in shots) + "\n") if shots else ""
        description = " ".join(t for t in (self.spec.description, definition.description if bucket != BUCKET else "") if t)
        user = template("table_rows_user").substitute(
            description=(f"Table {bucket}: " if bucket != BUCKET else "") + (description or "A realistic table."),
            columns=columns, checks=checks + self._keys_text(bucket, rng),
            constraints=self.constraints(axes), examples=examples, n=min(self.spec.batch_rows, definition.rows),
            row_format=", ".join(f'"{name}": ...' for name in definition.columns))
        return Prompt(bucket=bucket, index=index, messages=self.messages(user),
                      generator=generator or self.assign_generator(bucket, index), seed=rng.randrange(2**31),
                      schema=self.reply_schema(bucket), target={"axes": axes, "examples": [json.dumps(s) for s in shots]})

    @property
    def seed_salt(self) -> int | None:
        return None if self.spec.method == "program" else self.spec.seed  # a program takes the seed as an argument

    def _program_prompt(self, bucket: str, index: int, generator: str | None) -> Prompt:
        """Attempt `index`: the task, or (after a failed attempt) the task, that program and its errors.

        Nothing in it depends on the row count or the seed, which the program takes as arguments: a
        re-run for another count or seed finds the accepted program in the request cache."""
        columns, checks = self._schema_text(bucket)
        system = self.spec.system_prompt or template("table_program_system").template
        task = template("table_program_user").substitute(
            description=self.spec.description or "A realistic table.", columns=columns, checks=checks,
            skeleton=", ".join(f'"{name}": {name}' for name in self.spec.columns))
        task_messages: list[Message] = [{"role": "system", "content": system}, {"role": "user", "content": task}]
        messages, repairs = self.programs.conversation(index, task_messages, template("table_program_repair"))
        rng = random.Random(f"program/{index}")
        return Prompt(bucket=bucket, index=index, messages=messages,
                      generator=generator or self.assign_generator(bucket, index), seed=rng.randrange(2**31),
                      target={"attempt": index, "repairs": repairs})

    # -- replies --------------------------------------------------------------------------------

    def parse(self, prompt: Prompt, completion: Completion, record_id: str) -> Record | Rejected:
        """One row of the reply, for callers that show one per prompt (compare): the first valid one."""
        rows = self.parse_rows(prompt, completion, record_id)
        return next((r for r in rows if isinstance(r, Record)), rows[0])

    def parse_rows(self, prompt: Prompt, completion: Completion, record_id: str) -> list[Record | Rejected]:
        meta = self.meta(prompt, completion)

        def reject(reason: str, detail: str) -> list[Record | Rejected]:
            return [Rejected(id=record_id, stage=STAGE_PARSE, reason=reason, text=completion.text[:2000], detail=detail, meta=meta)]

        if completion.error:
            return reject("request_failed", completion.error)
        if completion.finish_reason == "length":
            return reject("truncated", f"stopped at max_tokens after {completion.completion_tokens} tokens")
        if self.spec.method == "program":
            return self._run_program(prompt, completion, record_id, meta)
        reply = extract_json(completion.text)
        raw_rows = reply.get("rows") if reply is not None else None
        if not isinstance(raw_rows, list) or not raw_rows:
            return reject("bad_json", "the reply has no non-empty list 'rows'")
        return [self._row(raw, f"{record_id}-{i:03d}", {**meta, "row": i}) for i, raw in enumerate(raw_rows)]

    def _row(self, raw: Any, row_id: str, meta: dict[str, Any]) -> Record | Rejected:
        table = meta["bucket"]
        text = json.dumps(raw, ensure_ascii=False, default=str)[:2000]
        if not isinstance(raw, dict):
            return Rejected(id=row_id, stage=STAGE_PARSE, reason="bad_json", text=text, detail="a row is not a JSON object", meta=meta)
        row = check_row(self.defs[table].columns, raw)
        if isinstance(row, RowProblem):
            return Rejected(id=row_id, stage=STAGE_PARSE, reason=row.reason, text=text, detail=row.detail, meta=meta)
        broken = next((c for c in self.row_checks[table] if not c.holds(row)), None)
        if broken is not None:
            return Rejected(id=row_id, stage=STAGE_PARSE, reason="broken_check", text=text, detail=broken.text, meta=meta)
        orphan = self._orphan(table, row, self.keys)
        if orphan:
            return Rejected(id=row_id, stage=STAGE_PARSE, reason="orphan_key", text=text, detail=orphan, meta=meta)
        return Record(row, id=row_id, meta=meta)

    def _orphan(self, table: str, row: dict[str, Any], keys: dict[str, Any]) -> str:
        """Which foreign key of `row` names no key of its parent ('' when none)."""
        for column, target in self.defs[table].foreign_keys.items():
            value = row.get(column)
            if value is not None and value not in keys.get(target.split(".")[0], ()):
                return f"{column}: {value!r} is not a key of {target}"
        return ""

    def _run_program(self, prompt: Prompt, completion: Completion, record_id: str, meta: dict[str, Any]) -> list[Record | Rejected]:
        def check(raw_rows: list[dict[str, Any]], n_rows: int) -> tuple[list[Record | Rejected], str]:
            rows = [self._row(raw, f"{record_id}-{i:05d}", {**meta, "row": i}) for i, raw in enumerate(raw_rows)]
            return rows, self._program_problems(rows, n_rows, [r.fields for r in rows if isinstance(r, Record)])

        wanted = self.spec.rows + max(2, math.ceil(0.1 * self.spec.rows))  # headroom for dedup and leakage
        reason, detail, rows = self.programs.run(prompt.index, prompt.target.get("repairs", 0), completion.text,
                                                 wanted, self.spec.seed, check)
        if reason is not None:
            code = self.programs.attempts[prompt.index].code
            return [Rejected(id=record_id, stage=STAGE_PARSE, reason=reason, text=code or completion.text[:2000],
                             detail=detail, meta=meta)]
        return rows

    def _program_problems(self, rows: Sequence[Record | Rejected], wanted: int, good: list[dict[str, Any]]) -> str:
        """What is wrong with a program's table, for the repair prompt ('' when nothing is)."""
        lines = []
        if len(rows) != wanted:
            lines.append(f"- make_table({wanted}, seed) returned {len(rows)} rows, not {wanted}")
        bad = [r for r in rows if isinstance(r, Rejected)]
        for reason, count in Counter(r.reason for r in bad).most_common():
            example = next(r for r in bad if r.reason == reason)
            lines.append(f"- {count} rows: {reason} (e.g. {example.detail})")
        for name, column in self.defs[BUCKET].columns.items():
            values = [row[name] for row in good if row.get(name) is not None]
            if column.unique and len(set(map(str, values))) < len(values):
                lines.append(f"- column {name} must be unique but repeats values")
        if good:
            import pandas as pd

            for check in self.table_checks[BUCKET]:
                held, values = check.measure(pd.DataFrame(good))
                if not held:
                    lines.append(f"- the rule {check.text} does not hold: " + ", ".join(f"{k} = {v}" for k, v in values.items()))
        return "\n".join(lines)

    # -- after the build ------------------------------------------------------------------------

    def finalize(self, final: list[Record]) -> tuple[str, list[Record], list[Rejected]] | None:
        """The foreign-key integrity check over the final tables, before anything is written."""
        if not self.parents:
            return None
        final_keys = {name: {r.fields[d.primary_key] for r in final if self.bucket(r) == name}
                      for name, d in self.defs.items() if d.primary_key}
        kept, dropped = [], []
        for record in final:
            orphan = self._orphan(self.bucket(record), record.fields, final_keys)
            if orphan:
                dropped.append(Rejected.from_record(record, FOREIGN_KEYS, "orphan_key", orphan))
            else:
                kept.append(record)
        return FOREIGN_KEYS, kept, dropped

    def dataset_schemas(self) -> dict[str, dict[str, str]]:
        dtypes = {"int": "int64", "float": "float64", "bool": "bool"}  # dates, categories and strings are strings
        tables = {name: {c: dtypes.get(column.type, "string") for c, column in definition.columns.items()}
                  for name, definition in self.defs.items()}
        return tables if self.spec.method == "related" else {DEFAULT_CONFIG: tables[BUCKET]}

    def dataset_configs(self, final: Sequence[Record]) -> dict[str, list[dict[str, Any]]]:
        if self.spec.method != "related":
            return super().dataset_configs(final)
        return {name: [self.dataset_row(r) for r in final if self.bucket(r) == name] for name in self.defs}

    def report(self, final: Sequence[Record]) -> dict[str, Any] | None:
        import pandas as pd

        tables = {}
        for name, definition in self.defs.items():
            rows = [r.fields for r in final if self.bucket(r) == name]
            table = pd.DataFrame(rows, columns=list(definition.columns))
            checks = []
            for check in self.table_checks[name]:
                held, values = check.measure(table) if len(table) else (False, {})
                checks.append({"check": check.text, "passed": held, "values": values})
            tables[name] = {"rows": len(rows), "columns": list(definition.columns), "table_checks": checks,
                            "foreign_keys": dict(definition.foreign_keys)}
        report: dict[str, Any] = {"method": self.spec.method, "tables": tables}
        if self.spec.method == "program":
            report["program"] = {"attempts": self.programs.summaries(), "accepted": self.programs.accepted() is not None}
        if self.real and final:
            from factory.tables.fidelity import fidelity

            report["fidelity"] = fidelity(self.real, [r.fields for r in final], self.spec.columns)
        return report

    def artifacts(self) -> dict[str, str]:
        accepted = self.programs.accepted()
        if accepted is None or accepted.code is None:
            return {}
        header = (f"# The program that made this run's table (attempt {accepted.index}), accepted after its output\n"
                  "# passed the schema and the checks. It ran in the factory's sandbox; re-run the recipe with\n"
                  "# --count N or --seed S to run it again without calling the model.\n")
        return {PROGRAM: header + accepted.code}

    @classmethod
    def card_section(cls, kind_report: dict[str, Any]) -> str:
        from factory.tables.fidelity import card_lines

        return card_lines(kind_report)


def read_real_table(spec: TableSpec) -> list[dict[str, Any]]:
    """The real table's rows, the schema's columns typed (a value that does not fit becomes null)."""
    if spec.real_data is None:
        return []
    from factory.data.real import read_table
    from factory.errors import DataError

    table = read_table(spec.real_data.path, spec.base_dir, split=spec.real_data.split)
    shared = [name for name in spec.columns if name in table.columns]
    if not shared:
        raise DataError(f"real_data.path: the real table shares no column with the schema; it has {list(table.columns)[:12]}")
    if spec.real_data.max_rows and len(table) > spec.real_data.max_rows:
        table = table.sample(n=spec.real_data.max_rows, random_state=spec.seed)
    return [{name: coerce_value(spec.columns[name], value) for name, value in zip(shared, values)}
            for values in table[shared].itertuples(index=False, name=None)]
