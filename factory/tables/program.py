"""A model-written table program: found in the reply, run in the sandbox, its output read back.

The program defines `make_table(n_rows, seed)`; a fixed driver (ours, not the model's) calls it and
writes the table as JSON in the sandbox's working directory. The program never sees the run
directory, the recipe or any key: only pandas, numpy and the two numbers.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

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
