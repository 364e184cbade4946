"""Is a model-written solution right? Its tests decide, run in the sandbox, and the tests must be real.

`verify(solution, tests, limits)` never raises for anything the code does. The tests run in the
harness's process (harness.py); the solution runs in a worker process of its own and answers the
tests' calls over a wire that carries plain data by value and everything else by reference (wire.py).
So the solution cannot write the verdict (it comes over a pipe only the harness holds, with a token
the solution never sees), cannot patch the tests, unittest, builtins or the harness (another process),
cannot read the tests' expected values (the test file is gone before it runs), and cannot pass off an
object whose `__eq__` or `__bool__` always says yes (the tests compare plain values only).

The outcome's reason is one of: passed; tests_failed (an assertion or any error while the tests ran,
with the trimmed traceback); crashed (the solution does not load or parse, the process died, it tried
a blocked action or ran out of memory, or no verdict came back); early_exit (the solution ended its
own process, or raised SystemExit, while loading or during the tests); untrusted_value (a value the
tests compared, or whose truth they took, was an object of the solution's, not plain data); timeout;
no_tests (the tests assert nothing, or they also pass for a stub of the solution whose every function
returns None: such tests pass for any solution).

What it does not guarantee: that the tests are good tests. They are the model's, and they run in the
harness; a stub failing them shows they check something, not that they check enough.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from factory.sandbox import TIMEOUT, Limits, blocked_action, run_python

HARNESS_FILES = ("harness.py", "worker.py", "wire.py")
PASSED, TESTS_FAILED, CRASHED, TIMED_OUT, NO_TESTS = "passed", "tests_failed", "crashed", "timeout", "no_tests"
EARLY_EXIT, UNTRUSTED_VALUE = "early_exit", "untrusted_value"
HERE = Path(__file__).parent
DETAIL_CHARS = 1500


@dataclass(frozen=True)
class Outcome:
    """How one solution fared against its tests."""

    reason: str
    detail: str = ""
    seconds: float = 0.0
    tests: int = 0

    @property
    def passed(self) -> bool:
        return self.reason == PASSED


def stub_of(solution: str) -> str:
    """The solution with every function's body replaced by `return None`, default values by None and
    decorators removed; at the top level and in class bodies only imports, functions and classes stay
    (code that runs on import could tell the stub apart and fail on purpose, to make empty tests look real)."""
    kept = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)

    class Stubber(ast.NodeTransformer):
        def stub(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.FunctionDef | ast.AsyncFunctionDef:
            node.body = [ast.Return(ast.Constant(None))]
            node.decorator_list = []
            node.returns = None
            args = node.args
            args.defaults = [ast.Constant(None) for _ in args.defaults]
            args.kw_defaults = [None if d is None else ast.Constant(None) for d in args.kw_defaults]
            for arg in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg):
                if arg is not None:
                    arg.annotation = None
            return node

        visit_FunctionDef = visit_AsyncFunctionDef = stub

        def visit_ClassDef(self, node: ast.ClassDef) -> ast.ClassDef:
            node.decorator_list = []
            node.keywords = []
            node.bases = [b for b in node.bases if isinstance(b, (ast.Name, ast.Attribute))]
            node.body = [self.visit(n) for n in node.body if isinstance(n, kept)] or [ast.Pass()]
            return node

    tree = ast.parse(solution)
    tree.body = [Stubber().visit(n) for n in tree.body if isinstance(n, kept)]
    return ast.unparse(ast.fix_missing_locations(tree))


def asserts_something(tests: str) -> bool:
    """True when the tests hold an assert statement, a unittest assert* call or pytest.raises."""
    for node in ast.walk(ast.parse(tests)):
        if isinstance(node, ast.Assert):
            return True
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name.startswith("assert") or name in ("raises", "fail"):
                return True
    return False


def static_problem(solution: str, tests: str) -> Outcome | None:
    """What is wrong before anything runs: code that does not parse, tests that check nothing."""
    for name, code in (("solution", solution), ("tests", tests)):
        try:
            ast.parse(code)
        except SyntaxError as exc:
            return Outcome(CRASHED if name == "solution" else TESTS_FAILED, f"the {name} does not parse: {exc.msg} (line {exc.lineno})")
    if not tests.strip() or not asserts_something(tests):
        return Outcome(NO_TESTS, "the tests assert nothing")
    return None


def verify(solution: str, tests: str, limits: Limits) -> Outcome:
    """Run `tests` against `solution`, then against its stub, in the sandbox (harness.py)."""
    problem = static_problem(solution, tests)
    if problem is not None:
        return problem
    files = {"solution.py": solution, "test_solution.py": tests, "stub.py": stub_of(solution), **_harness()}
    run = run_python(files, "harness.py", limits=limits, workers=("worker.py", "worker.py"))
    seconds = round(run.seconds, 3)
    if run.status == TIMEOUT:
        return Outcome(TIMED_OUT, run.reason, seconds)
    result = _verdict(run.report)
    if result is None:  # the harness did not report: whatever the exit status, that is no pass
        why = run.reason or f"the run ended (exit status {run.returncode}) without a verdict from the harness"
        return Outcome(CRASHED, f"{why}\n{run.stderr.strip()[-DETAIL_CHARS:]}".strip(), seconds)
    error = result["error"][-DETAIL_CHARS:]
    if result["early_exit"]:
        return Outcome(EARLY_EXIT, f"the solution ended its own process ({result['early_exit']}): an early exit is "
                                   f"not a pass\n{error}".strip(), seconds)
    if result["untrusted"]:
        return Outcome(UNTRUSTED_VALUE, f"{result['untrusted']}; return plain values (int, str, list, dict, ...)\n"
                                        f"{error}".strip(), seconds)
    blocked = blocked_action(result["error"])
    if blocked:  # a walled-off action, caught by the harness as an error: the reason is the sandbox, not a test
        return Outcome(CRASHED, f"blocked: {blocked} (not allowed in the sandbox)\n{error}", seconds)
    if result["phase"] == "load":
        return Outcome(CRASHED, error, seconds)
    if result["error"].rstrip().endswith("MemoryError"):  # the memory limit, not a wrong answer
        return Outcome(CRASHED, f"memory_limit: the code ran out of its {limits.memory_mb} MB\n{error}", seconds)
    if not result["ok"]:
        return Outcome(TESTS_FAILED, error, seconds, result["tests"])
    if not result["stub_checked"]:
        return Outcome(CRASHED, "the tests could not be run against a stub of the solution (its process did not "
                                "answer), so they are not shown to check anything", seconds)
    if result["stub_passed"]:
        return Outcome(NO_TESTS, "the tests also pass for a stub whose every function returns None: they check nothing", seconds)
    return Outcome(PASSED, "", seconds, result["tests"])


@cache
def _harness() -> dict[str, str]:
    """The harness's own files, read once (verify runs once per reply, on a worker thread per core)."""
    return {name: (HERE / name).read_text(encoding="utf-8") for name in HARNESS_FILES}


def _verdict(report: str | None) -> dict[str, Any] | None:
    """The harness's report, or None when there is none or it is not the harness's shape."""
    try:
        result = json.loads(report) if report is not None else None
    except ValueError:
        return None
    fields = {"phase": str, "ok": bool, "error": str, "tests": int, "stub_passed": bool, "stub_checked": bool,
              "early_exit": str, "untrusted": str}
    if not isinstance(result, dict) or any(type(result.get(k)) is not t for k, t in fields.items()):
        return None
    return result
