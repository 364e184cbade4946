"""Runs inside the sandbox: a solution's tests against the solution, then against a stub of it.

Writes result.json: {"phase": "solution" | "stub", "ok": bool, "error": str, "tests": int, "stub_passed": bool}.
The tests run in a namespace holding the solution's names (so bare calls work) and `solution` is
importable (so `from solution import f` works); top-level asserts run as the tests load, then every
`test*` function and every unittest.TestCase in them. Standard library only: this file is copied
into the sandbox and run with `python -I`.
"""

import io
import json
import os
import sys
import traceback
import types
import unittest

TRACE_LINES = 12  # the tail of a traceback: where it failed and why


def load(path):
    module = types.ModuleType("solution")
    module.__file__ = path
    sys.modules["solution"] = module
    with open(path, encoding="utf-8") as handle:
        exec(compile(handle.read(), "solution.py", "exec"), module.__dict__)
    return module


def run_tests(solution):
    """The number of test units run; raises at the first failure."""
    namespace = dict(vars(solution))
    namespace["__name__"] = "test_solution"
    with open("test_solution.py", encoding="utf-8") as handle:
        exec(compile(handle.read(), "test_solution.py", "exec"), namespace)
    ran = 1
    for name, value in list(namespace.items()):
        if name.startswith("test") and callable(value) and not isinstance(value, type):
            value()
            ran += 1
    cases = [v for v in namespace.values()
             if isinstance(v, type) and issubclass(v, unittest.TestCase) and v is not unittest.TestCase]
    if cases:
        suite = unittest.TestSuite(unittest.defaultTestLoader.loadTestsFromTestCase(case) for case in cases)
        result = unittest.TextTestRunner(stream=io.StringIO(), verbosity=0).run(suite)
        ran += result.testsRun
        problems = result.failures + result.errors
        if problems:
            raise AssertionError(problems[0][1].strip().splitlines()[-1])
    return ran


def trimmed():
    """The error's traceback without the harness's and launcher's frames, the working folder named /sandbox
    (its random name would make every repair prompt built from it new), its last lines."""
    kind, error, tb = sys.exc_info()
    frames = [f for f in traceback.extract_tb(tb) if os.path.basename(f.filename) not in ("harness.py", "_launcher.py")]
    lines = "".join(traceback.format_list(frames) + traceback.format_exception_only(kind, error))
    return "\n".join(lines.replace(os.getcwd(), "/sandbox").strip().splitlines()[-TRACE_LINES:])


def main():
    result = {"phase": "solution", "ok": False, "error": "", "tests": 0, "stub_passed": False}
    try:
        solution = load("solution.py")
    except BaseException:  # noqa: BLE001 - whatever the model wrote raises
        result["error"] = "the solution does not load:\n" + trimmed()
        return result
    try:
        result["tests"] = run_tests(solution)
    except BaseException:  # noqa: BLE001
        result["error"] = trimmed()
        result["phase"] = "tests"
        return result
    result["ok"] = True
    result["phase"] = "stub"
    try:
        run_tests(load("stub.py"))
        result["stub_passed"] = True
    except BaseException:  # noqa: BLE001 - the stub must fail
        pass
    return result


if __name__ == "__main__":
    outcome = main()
    with open("result.json", "w", encoding="utf-8") as out:
        json.dump(outcome, out)
