"""Runs inside the sandbox: a solution's tests, in a process the solution never runs in.

Started by the launcher as `harness.py STATUS_FD FD:PID FD:PID` with two workers (worker.py): one for
the solution, one for a stub of it (every function returns None). Before either runs any code, the
harness reads the tests, the sources and the run's report token, and deletes the tests and the token
from the working directory, so the solution can read neither. It then runs the tests here: every call
of a solution's function is a request to the solution's worker, answered with plain data or a
reference (wire.py). The verdict goes to the runner over STATUS_FD, a pipe no worker holds, with the
token: a file the solution writes (result.json, say), its exit status, or text it prints is never read
as a verdict. This process is not dumpable, so a worker of the same uid cannot reach its memory.

Report: "TOKEN {json}" where json is {"phase": "load" | "tests" | "stub" | "done", "ok": bool,
"error": str, "tests": int, "stub_passed": bool, "stub_checked": bool, "early_exit": str,
"untrusted": str}. Standard library only: this file is copied into the sandbox and run with `python -I`;
its own folder, which the solution may write, is on no import path of this process.
"""

import importlib.util
import io
import json
import os
import sys
import traceback
import types
import unittest

TRACE_LINES = 12  # the tail of a traceback: where it failed and why
REPORT_LIMIT = 32_000  # the verdict must fit in the status pipe's buffer: the runner reads it at the end


def load_wire():  # noqa: ANN201 - read before any worker runs a line of the solution's
    spec = importlib.util.spec_from_file_location("wire", os.path.join(os.getcwd(), "wire.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


wire = load_wire()


def take(name, delete=False):
    with open(name, encoding="utf-8") as handle:
        text = handle.read()
    if delete:
        os.unlink(name)
    return text


def run_tests(tests, names):
    """The number of test units run; raises at the first failure."""
    module = types.ModuleType("solution")
    module.__dict__.update(names)
    sys.modules["solution"] = module  # `import solution` and `from solution import f` find the remote names
    namespace = dict(names)
    namespace["__name__"] = "test_solution"
    exec(compile(tests, "test_solution.py", "exec"), namespace)  # noqa: S102
    ran = 1
    for name, value in list(namespace.items()):
        if name.startswith("test") and callable(value) and not isinstance(value, type) and not isinstance(value, wire.Remote):
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
    """The error's traceback: the tests' frames, then the solution's (from its worker), its last lines."""
    kind, error, tb = sys.exc_info()
    frames = [f for f in traceback.extract_tb(tb) if os.path.basename(f.filename) not in wire.PLUMBING]
    remote = getattr(error, "remote_trace", "")
    lines = "".join(traceback.format_list(frames)) + (remote or "".join(traceback.format_exception_only(kind, error)))
    return "\n".join(lines.strip().splitlines()[-TRACE_LINES:])


def exits(peer, pid):
    """How the worker ended itself, if it did: SystemExit raised, or its process gone (`pid` is this
    process's child: the launcher forked it before becoming the harness)."""
    if not peer.gone:
        return "; ".join(peer.exits)
    return "; ".join([*peer.exits, f"its process stopped answering {peer.gone}: {ended(pid)}"])


def ended(pid):
    """How a worker process ended."""
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return "it is gone"
    code = os.waitstatus_to_exitcode(status)
    return f"exit status {code}" if code >= 0 else f"killed by signal {-code}"


def phase(peer, filename, source, tests):
    """Load the code in its worker and run the tests against it: (tests run, error or '', where it failed)."""
    try:
        names = peer.load(filename, source)
    except BaseException:  # noqa: BLE001 - whatever the code raised while loading
        return 0, "the solution does not load:\n" + trimmed(), "load"
    try:
        return run_tests(tests, names), "", ""
    except BaseException:  # noqa: BLE001 - a failed assert, an error, or an early exit of the worker
        return 0, trimmed(), "tests"


def main():
    status_fd = int(sys.argv[1])
    (solution_fd, solution_pid), (stub_fd, stub_pid) = (map(int, channel.split(":")) for channel in sys.argv[2:4])
    token = take(".report-token", delete=True).strip()
    tests = take("test_solution.py", delete=True)  # gone before the solution runs: it cannot read the expected values
    solution, stub = take("solution.py"), take("stub.py")
    result = {"phase": "load", "ok": False, "error": "", "tests": 0, "stub_passed": False, "stub_checked": False,
              "early_exit": "", "untrusted": ""}
    peer = wire.Peer(solution_fd, strict=True)
    ran, error, where = phase(peer, "solution.py", solution, tests)
    result.update(tests=ran, error=error, phase=where or "stub", ok=not error, early_exit=exits(peer, solution_pid),
                  untrusted="; ".join(peer.untrusted))
    if result["ok"] and not result["early_exit"] and not peer.untrusted:
        stub_peer = wire.Peer(stub_fd, strict=True)
        _, stub_error, stub_where = phase(stub_peer, "solution.py", stub, tests)
        # The stub counts only when it ran and failed a test: a stub process that died proves nothing.
        result["stub_checked"] = stub_where != "load" and not exits(stub_peer, stub_pid)
        result["stub_passed"] = not stub_error
        result["phase"] = "done"
    report = json.dumps(result)
    if len(report) > REPORT_LIMIT:
        result["error"] = result["error"][-2000:]
        report = json.dumps(result)
    os.write(status_fd, f"{token} {report}\n".encode())
    os.close(status_fd)


if __name__ == "__main__":
    main()
