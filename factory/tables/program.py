"""A model-written table program: found in the reply, run in the sandbox, its output read back.

The program defines `make_table(n_rows, seed)`; a fixed driver (ours, not the model's) calls it and
writes the table as JSON in the sandbox's working directory. The program never sees the run
directory, the recipe or any key: only pandas, numpy and the two numbers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from string import Template
from typing import Any

from factory.records import Message
from factory.sandbox import Limits, run_python

ENTRY = "make_table"
_FENCE = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)```", re.DOTALL)
_DRIVER = """\
import pandas as pd
from program import make_table
table = make_table({n_rows}, {seed})
if not isinstance(table, pd.DataFrame):
    raise TypeError(f"make_table returned a {{type(table).__name__}}, not a pandas DataFrame")
table.to_json("table.json", orient="split", index=False, date_format="iso", double_precision=15, default_handler=str)
"""
TRACEBACK_LINES = 12  # what a repair prompt shows of a crash: the end of the traceback


def extract_program(reply: str) -> str | None:
    """The program in a reply: the fenced block that defines make_table, else the bare reply if it does."""
    for block in _FENCE.findall(reply):
        if f"def {ENTRY}" in block:
            return block.strip() + "\n"
    if f"def {ENTRY}" in reply and "```" not in reply:
        return reply.strip() + "\n"
    return None


@dataclass
class ProgramRun:
    """A program's table as rows (None when it did not run to the end) and, if not, why."""

    rows: list[dict[str, Any]] | None
    error: str = ""
    seconds: float = 0.0


def run_program(program: str, n_rows: int, seed: int, limits: Limits) -> ProgramRun:
    """Run `program` in the sandbox for `n_rows` rows; its rows, or the error a repair prompt can show."""
    result = run_python({"program.py": program, "driver.py": _DRIVER.format(n_rows=int(n_rows), seed=int(seed))},
                        "driver.py", limits=limits, outputs=("table.json",))
    if not result.ok:
        tail = "\n".join(result.stderr.strip().splitlines()[-TRACEBACK_LINES:])
        return ProgramRun(None, f"{result.reason}\n{tail}".strip(), result.seconds)
    try:
        table = json.loads(result.files["table.json"])
        rows = [dict(zip(table["columns"], values)) for values in table["data"]]
    except (KeyError, ValueError, TypeError) as exc:
        return ProgramRun(None, f"the table could not be read back: {exc}", result.seconds)
    return ProgramRun(rows, "", result.seconds)


# What a failed run's first word says, kept as the rejected row's reason; anything else crashed.
RUN_STOPS = ("timeout", "memory_limit", "blocked")
PROBE_ROWS, PROBE_SEED = 200, 0  # the table every attempt is first validated on
Check = Callable[[list[dict[str, Any]], int], tuple[list[Any], str]]  # (raw rows, rows asked) -> (checked rows, problems)


@dataclass
class Attempt:
    """One program from the model: what it was, which repair it was, and how it ran."""

    index: int
    repairs: int
    code: str | None
    error: str = ""
    seconds: float = 0.0
    rows: int = 0

    def summary(self) -> dict[str, Any]:
        return {"index": self.index, "repairs": self.repairs, "error": self.error, "seconds": round(self.seconds, 3), "rows": self.rows}


class ProgramAttempts:
    """The attempts of one `method: program` build, by prompt index: which prompt repairs which
    program, how each ran, and the accepted one.

    A failing program goes back to the model with its errors while it has repair rounds left; then a
    fresh one is asked for (a small model that cannot fix its program in a few rounds rarely does in
    more). Each attempt runs first on a fixed probe, so its errors, and the repair prompts built from
    them, do not depend on the row count or the seed: a re-run for another count or seed replays the
    same cached attempts and only runs the accepted program again."""

    def __init__(self, repair_rounds: int, limits: Limits) -> None:
        self.repair_rounds = repair_rounds
        self.limits = limits
        self.attempts: dict[int, Attempt] = {}

    def conversation(self, index: int, task: list[Message], repair_template: Template) -> tuple[list[Message], int]:
        """The messages of prompt `index` (the task, plus the last program and its errors when it is a
        repair) and how many repairs deep it is."""
        previous = self.attempts.get(index - 1)
        if previous is None or not previous.error or previous.code is None or previous.repairs >= self.repair_rounds:
            return task, 0
        return [*task, {"role": "assistant", "content": f"```python\n{previous.code}```"},
                {"role": "user", "content": repair_template.substitute(errors=previous.error)}], previous.repairs + 1

    def run(self, index: int, repairs: int, reply: str, wanted: int, seed: int, check: Check) -> tuple[str | None, str, list[Any]]:
        """Run the program in `reply`: (None, "", its checked rows) when it is accepted, else (reason, detail, [])."""
        code = extract_program(reply)
        attempt = self.attempts[index] = Attempt(index, repairs, code)
        if code is None:
            attempt.error = f"no_program: the reply has no ```python block defining {ENTRY}(n_rows, seed)"
            return "no_program", attempt.error, []
        rows: list[Any] = []
        for n_rows, run_seed in dict.fromkeys([(PROBE_ROWS, PROBE_SEED), (wanted, seed)]):
            run = run_program(code, n_rows, run_seed, self.limits)
            attempt.seconds += run.seconds
            if run.rows is None:
                attempt.error = run.error
                stop = run.error.split(":", 1)[0]
                return (stop if stop in RUN_STOPS else "program_failed"), run.error[:1000], []
            rows, problems = check(run.rows, n_rows)
            if problems:
                attempt.error = problems
                return "invalid_table", problems[:1000], []
        attempt.rows = len(rows)
        return None, "", rows

    def accepted(self) -> Attempt | None:
        """The last accepted attempt, if any."""
        return next((a for _, a in sorted(self.attempts.items(), reverse=True) if a.code and not a.error), None)

    def summaries(self) -> list[dict[str, Any]]:
        return [a.summary() for _, a in sorted(self.attempts.items())]
