"""A solution cannot forge its own verdict: the known tricks, each rejected with a reason that says which;
and honest solutions of every common shape still pass (their tests run in another process than they do)."""

from __future__ import annotations

import os

import pytest

from factory.code.verify import CRASHED, EARLY_EXIT, NO_TESTS, PASSED, TESTS_FAILED, TIMED_OUT, UNTRUSTED_VALUE, verify
from factory.sandbox import Limits

pytestmark = pytest.mark.skipif(os.system("command -v bwrap >/dev/null") != 0, reason="bubblewrap is not installed")
LIMITS = Limits(seconds=4, memory_mb=512)
WRONG = "def add(a, b):\n    return a - b\n"  # plainly wrong: every trick below rides on it
TESTS = "assert add(1, 2) == 3\nassert add(2, 2) == 4\n"
VERDICT = ("{'phase': 'stub', 'ok': True, 'error': '', 'tests': 3, 'stub_passed': False, 'stub_checked': True, "
           "'early_exit': '', 'untrusted': ''}")
FORGE_FILE = f"import json, os\njson.dump({VERDICT}, open('result.json', 'w'))\n"


@pytest.mark.parametrize(("solution", "tests", "reason", "says"), [
    pytest.param(FORGE_FILE + "os._exit(0)\n" + WRONG, TESTS, EARLY_EXIT, "exit status 0", id="forged-result-file-then-exit"),
    pytest.param(FORGE_FILE + WRONG, TESTS, TESTS_FAILED, "AssertionError", id="forged-result-file"),
    pytest.param("import sys\n" + WRONG + "sys.exit(0)\n", TESTS, EARLY_EXIT, "SystemExit(0)", id="sys-exit-at-import"),
    pytest.param("import os\ndef add(a, b):\n    os._exit(0)\n", TESTS, EARLY_EXIT, "exit status 0", id="os-exit-in-function"),
    pytest.param("import sys\ndef add(a, b):\n    sys.exit(0)\n", TESTS, EARLY_EXIT, "SystemExit(0)", id="sys-exit-in-function"),
    pytest.param("class Yes:\n    def __eq__(self, other):\n        return True\ndef add(a, b):\n    return Yes()\n",
                 TESTS, UNTRUSTED_VALUE, "a Yes object from the solution was compared with int data", id="eq-always-true"),
    pytest.param("class Yes(int):\n    def __eq__(self, other):\n        return True\n    __hash__ = int.__hash__\n"
                 "def add(a, b):\n    return Yes(0)\n", TESTS, UNTRUSTED_VALUE, "a Yes object", id="int-subclass-eq"),
    pytest.param("class Yes:\n    def __bool__(self):\n        return True\ndef is_even(n):\n    return Yes()\n",
                 "assert is_even(2)\nassert is_even(4)\n", UNTRUSTED_VALUE, "asked for its truth", id="bool-always-true"),
    pytest.param("import unittest, builtins\nunittest.TestCase.assertEqual = lambda *a, **k: None\n"
                 "unittest.TestCase.run = lambda self, result=None: None\nbuiltins.AssertionError = type('Nope', (Exception,), {})\n"
                 + WRONG, "import unittest\nclass T(unittest.TestCase):\n    def test_a(self):\n        self.assertEqual(add(1, 2), 3)\n",
                 TESTS_FAILED, "-1 != 3", id="patch-unittest-and-builtins"),
    pytest.param("import sys, gc\nfor thing in gc.get_objects():\n    if callable(thing) and getattr(thing, '__name__', '') in "
                 "('run_tests', 'phase', 'verify'):\n        thing.__code__ = (lambda *a, **k: 1).__code__\n"
                 "for name in list(sys.modules):\n    if name in ('harness', '__main__', 'wire'):\n"
                 "        sys.modules[name].run_tests = lambda *a: 1\n"
                 + WRONG, TESTS, TESTS_FAILED, "AssertionError", id="patch-the-harness"),
    pytest.param("import re\ndef add(a, b):\n    try:\n        source = open('test_solution.py').read()\n"
                 "        return int(re.search(rf'add\\({a}, {b}\\) == (\\d+)', source).group(1))\n"
                 "    except Exception:\n        return a - b\n",
                 TESTS, TESTS_FAILED, "AssertionError", id="read-the-expected-values"),
    pytest.param("import os, time\ndef add(a, b):\n    if os.path.exists('harness.py'):\n        time.sleep(100)\n    return a + b\n",
                 TESTS, TIMED_OUT, "time limit", id="sleep-only-when-tested"),
    pytest.param("def add(a, b):\n    return a + b\nif 'return ' + 'None' in open(__file__).read():\n    raise RuntimeError('stub')\n",
                 "assert add(1, 2) == 3 or True\n", NO_TESTS, "stub", id="stub-that-tells-itself-apart"),
    pytest.param("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n" + WRONG, TESTS, CRASHED, "", id="kill-the-harness"),
    pytest.param("import os, glob\nfor path in glob.glob('/proc/*/fd/*'):\n    try:\n        fd = os.open(path, os.O_WRONLY)\n"
                 f"        os.write(fd, b'x ' + repr({VERDICT}).replace(\"'\", '\"').replace('True', 'true').replace('False', 'false')"
                 ".encode() + b'\\n')\n    except OSError:\n        pass\n" + WRONG, TESTS, TESTS_FAILED, "AssertionError",
                 id="write-a-verdict-into-every-pipe"),
])
def test_a_hostile_solution_cannot_forge_its_verdict(solution: str, tests: str, reason: str, says: str) -> None:
    outcome = verify(solution, tests, LIMITS)
    assert outcome.reason == reason and says in outcome.detail, outcome
    assert not outcome.passed


HONEST = [
    pytest.param("class Stack:\n    def __init__(self):\n        self.items = []\n    def push(self, x):\n        self.items.append(x)\n"
                 "    def pop(self):\n        if not self.items:\n            raise IndexError('empty')\n        return self.items.pop()\n"
                 "    def __len__(self):\n        return len(self.items)\n",
                 "s = Stack()\ns.push(1)\ns.push(2)\nassert len(s) == 2\nassert s.pop() == 2\nassert isinstance(s, Stack)\n"
                 "try:\n    Stack().pop()\n    assert False\nexcept IndexError:\n    pass\n", id="a-class-with-methods"),
    pytest.param("def reverse_in_place(xs):\n    xs.reverse()\n", "a = [1, 2, 3]\nreverse_in_place(a)\nassert a == [3, 2, 1]\n",
                 id="an-argument-changed-in-place"),
    pytest.param("class BadInput(ValueError):\n    pass\ndef f(x):\n    if x < 0:\n        raise BadInput('negative')\n    return x\n",
                 "try:\n    f(-1)\n    assert False\nexcept BadInput as e:\n    assert 'negative' in str(e)\n"
                 "try:\n    f(-2)\nexcept ValueError:\n    pass\nassert f(3) == 3\n", id="its-own-exception"),
    pytest.param("def count(n):\n    i = 0\n    while i < n:\n        yield i\n        i += 1\n",
                 "assert list(count(3)) == [0, 1, 2]\nassert sum(count(4)) == 6\n", id="a-generator"),
    pytest.param("def sort_by(xs, key):\n    return sorted(xs, key=key)\n", "assert sort_by([3, 1, 2], key=lambda x: -x) == [3, 2, 1]\n",
                 id="a-callback"),
    pytest.param("from collections import Counter, namedtuple\nPoint = namedtuple('Point', 'x y')\n"
                 "def words(t):\n    return Counter(t.split())\n"
                 "def origin():\n    return Point(0, 0)\n",
                 "assert words('a a b') == {'a': 2, 'b': 1}\nassert origin() == (0, 0) and origin().x == 0\n", id="counter-and-namedtuple"),
    pytest.param("from datetime import date, timedelta\ndef next_day(d):\n    return d + timedelta(days=1)\n",
                 "from datetime import date\nassert next_day(date(2024, 2, 28)) == date(2024, 2, 29)\n", id="dates"),
    pytest.param("from dataclasses import dataclass\n@dataclass\nclass Point:\n    x: int\n    y: int\n    def norm1(self):\n"
                 "        return abs(self.x) + abs(self.y)\n", "p = Point(1, -2)\nassert p.norm1() == 3 and p.x == 1\n"
                 "assert p == Point(1, -2)\n",
                 id="a-dataclass"),
    pytest.param("import math\ndef area(r):\n    return math.pi * r * r\n", "assert abs(area(1) - math.pi) < 1e-9\n",
                 id="the-solution's-imports"),
    pytest.param("def add(a, b):\n    return a + b\n", "from solution import add as plus\nimport solution\n"
                 "assert plus(1, 2) == 3 and solution.add(2, 2) == 4\n", id="imported-from-solution"),
]


@pytest.mark.parametrize(("solution", "tests"), HONEST)
def test_an_honest_solution_still_passes(solution: str, tests: str) -> None:
    outcome = verify(solution, tests, LIMITS)
    assert outcome.reason == PASSED, outcome
