"""Solutions run against their tests in the sandbox: hostile code is stopped with a reason, empty tests do not count."""

from __future__ import annotations

import os

import pytest

from factory.code.verify import CRASHED, NO_TESTS, PASSED, TESTS_FAILED, TIMED_OUT, stub_of, verify
from factory.sandbox import Limits

pytestmark = pytest.mark.skipif(os.system("command -v bwrap >/dev/null") != 0, reason="bubblewrap is not installed")
LIMITS = Limits(seconds=8, memory_mb=512)
ADD = "def add(a, b):\n    return a + b\n"


def test_a_right_solution_passes_and_a_wrong_one_fails_with_its_assertion() -> None:
    passed = verify(ADD, "assert add(1, 2) == 3\nassert add(-1, 1) == 0\n", LIMITS)
    assert passed.reason == PASSED and passed.seconds > 0
    failed = verify(ADD, "assert add(1, 2) == 4\n", LIMITS)
    assert failed.reason == TESTS_FAILED
    assert 'File "test_solution.py", line 1' in failed.detail and failed.detail.endswith("AssertionError")
    assert "harness.py" not in failed.detail and "/tmp/" not in failed.detail, "the trace shows the model's code only"


@pytest.mark.parametrize("tests", [
    "def test_add():\n    assert add(2, 2) == 4\n",
    "from solution import add\nimport unittest\n\nclass T(unittest.TestCase):\n"
    "    def test_a(self):\n        self.assertEqual(add(1, 1), 2)\n",
])
def test_test_functions_and_unittest_cases_run(tests: str) -> None:
    assert verify(ADD, tests, LIMITS).reason == PASSED


@pytest.mark.parametrize("tests, why", [
    ("assert True\n", "also pass for a stub"),
    ("x = add(1, 2)\nprint(x)\n", "assert nothing"),
    ("", "assert nothing"),
    ("assert add(1, 2) is not False\n", "also pass for a stub"),
])
def test_tests_that_check_nothing_do_not_count(tests: str, why: str) -> None:
    outcome = verify(ADD, tests, LIMITS)
    assert outcome.reason == NO_TESTS and why in outcome.detail


def test_the_stub_keeps_the_shape_and_returns_none() -> None:
    stub = stub_of("import math\n\nclass Box:\n    def area(self):\n        return 1\n\ndef f(x):\n    return math.sqrt(x)\n")
    assert "import math" in stub and "class Box" in stub and stub.count("return None") == 2


@pytest.mark.parametrize("solution, reason, says", [
    ("import socket\ndef add(a, b):\n    socket.create_connection(('93.184.216.34', 80))\n    return a + b\n",
     CRASHED, "blocked: network access"),
    ("def add(a, b):\n    with open('/tmp/escape.txt', 'w') as f:\n        f.write('x')\n    return a + b\n",
     CRASHED, "blocked: writing outside the working directory"),
    ("import os\ndef add(a, b):\n    while True:\n        os.fork()\n", CRASHED, "blocked: new processes"),
    ("def add(a, b):\n    while True:\n        pass\n", TIMED_OUT, "time limit"),
    ("def add(a, b):\n    hog = [bytearray(10**8) for _ in range(100)]\n    return a + b\n", CRASHED, "memory_limit"),
    ("def add(a, b)\n    return a + b\n", CRASHED, "does not parse"),
])
def test_hostile_and_broken_solutions_are_stopped_with_a_reason(solution: str, reason: str, says: str) -> None:
    outcome = verify(solution, "assert add(1, 2) == 3\n", Limits(seconds=4, memory_mb=512))
    assert outcome.reason == reason and says in outcome.detail, outcome


def test_a_solution_sees_no_environment_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    canary = "sk-canary-code-DO-NOT-LEAK-5e1f"
    monkeypatch.setenv("OPENAI_API_KEY", canary)
    solution = "import os\ndef key():\n    return os.environ.get('OPENAI_API_KEY')\n"
    outcome = verify(solution, f"assert key() == {canary!r}\n", LIMITS)
    assert outcome.reason == TESTS_FAILED and canary not in outcome.detail.replace(f"{canary!r}", "")
    assert verify(solution, "assert key() is None\nassert key() != 1\n", LIMITS).reason == NO_TESTS, \
        "None is what the stub returns too: the key is simply absent"
