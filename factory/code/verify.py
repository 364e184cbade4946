"""Is a model-written solution right? Its tests decide, run in the sandbox, and the tests must be real.

`verify(solution, tests, limits)` never raises for anything the code does. (The tests run in the
solution's process, so a solution written to fake its own result could; the sandbox contains what it
can do, not what it claims.) The outcome's reason is
one of: passed; tests_failed (an assertion or any error while the tests ran, with the trimmed
traceback); crashed (the solution does not load or parse, the process died, it tried a blocked
action or ran out of memory); timeout; no_tests (the tests assert nothing, or they also pass for a
stub of the solution whose every function returns None: such tests pass for any solution).
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from pathlib import Path

from factory.sandbox import TIMEOUT, Limits, blocked_action, run_python

HARNESS = Path(__file__).with_name("harness.py")
PASSED, TESTS_FAILED, CRASHED, TIMED_OUT, NO_TESTS = "passed", "tests_failed", "crashed", "timeout", "no_tests"
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
    """The solution with every function's body replaced by `return None` (classes keep their shape)."""

    class Stubber(ast.NodeTransformer):
        def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.FunctionDef:
            node.body = [ast.Return(ast.Constant(None))]
            node.decorator_list = []
            return node

        def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> ast.AsyncFunctionDef:
            node.body = [ast.Return(ast.Constant(None))]
            node.decorator_list = []
            return node

    return ast.unparse(ast.fix_missing_locations(Stubber().visit(ast.parse(solution))))


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
    """Run `tests` against `solution`, then against its stub, in the sandbox."""
    problem = static_problem(solution, tests)
    if problem is not None:
        return problem
    run = run_python({"solution.py": solution, "test_solution.py": tests, "stub.py": stub_of(solution),
                      "harness.py": HARNESS.read_text(encoding="utf-8")}, "harness.py", limits=limits, outputs=("result.json",))
    seconds = round(run.seconds, 3)
    if run.status == TIMEOUT:
        return Outcome(TIMED_OUT, run.reason, seconds)
    if not run.ok or "result.json" not in run.files:
        why = run.reason or "the program ended before its tests finished"
        return Outcome(CRASHED, f"{why}\n{run.stderr.strip()[-DETAIL_CHARS:]}".strip(), seconds)
    result = json.loads(run.files["result.json"])
    blocked = blocked_action(result["error"])
    if blocked:  # a walled-off action, caught by the harness as an error: the reason is the sandbox, not a test
        return Outcome(CRASHED, f"blocked: {blocked} (not allowed in the sandbox)\n{result['error'][-DETAIL_CHARS:]}", seconds)
    if result["phase"] == "solution":
        return Outcome(CRASHED, result["error"][-DETAIL_CHARS:], seconds)
    if result["error"].rstrip().endswith("MemoryError"):  # the memory limit, not a wrong answer
        return Outcome(CRASHED, f"memory_limit: the code ran out of its {limits.memory_mb} MB\n{result['error'][-DETAIL_CHARS:]}", seconds)
    if not result["ok"]:
        return Outcome(TESTS_FAILED, result["error"][-DETAIL_CHARS:], seconds, result["tests"])
    if result["stub_passed"]:
        return Outcome(NO_TESTS, "the tests also pass for a stub whose every function returns None: they check nothing", seconds)
    return Outcome(PASSED, "", seconds, result["tests"])
