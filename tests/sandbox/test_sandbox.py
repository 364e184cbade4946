"""The sandbox against hostile programs: each attack is stopped, with a reason that says why.

Each wall is also tested through ctypes, which passes the audit hooks: the hook only names the
reason, the namespace, the read-only filesystem and the seccomp filter are what stop it."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

from factory.sandbox import BLOCKED, CRASHED, MEMORY, OK, TIMEOUT, Limits, run_python

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
QUICK = Limits(seconds=5, memory_mb=1024)


def run(code: str, limits: Limits = QUICK, **kwargs: object):  # noqa: ANN201
    return run_python({"program.py": code}, "program.py", limits=limits, **kwargs)


def test_a_well_behaved_program_runs_with_pandas_and_returns_its_files() -> None:
    result = run("import pandas as pd\npd.DataFrame({'a': [1, 2]}).to_csv('out.csv', index=False)\nprint('done')",
                 outputs=("out.csv", "missing.csv"))
    assert result.status == OK and result.reason == ""
    assert result.stdout.strip() == "done"
    assert result.files == {"out.csv": b"a\n1\n2\n"}


def test_a_socket_is_blocked_and_the_network_is_gone_even_through_ctypes() -> None:
    result = run("import socket\nsocket.create_connection(('127.0.0.1', 22), timeout=2)")
    assert result.status == BLOCKED and result.reason.startswith("blocked: network access")
    raw = run("import ctypes, struct\nlibc = ctypes.CDLL(None, use_errno=True)\ns = libc.socket(2, 1, 0)\n"
              "addr = struct.pack('!HH4s8x', 2, 53, bytes([1, 1, 1, 1]))\n"
              "print(libc.connect(s, addr, len(addr)), ctypes.get_errno())")
    code, errno = raw.stdout.split()
    assert code == "-1" and errno in ("101", "97")  # ENETUNREACH / EAFNOSUPPORT: no interface but an isolated loopback


def test_environment_secrets_do_not_reach_the_program(monkeypatch: pytest.MonkeyPatch) -> None:
    key = f"sk-sandbox-canary-{uuid.uuid4().hex}"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    result = run("import os\nprint(sorted(os.environ))\nprint(os.environ['OPENAI_API_KEY'])")
    assert result.status == CRASHED and "KeyError: 'OPENAI_API_KEY'" in result.reason
    assert "OPENAI_API_KEY" not in result.stdout and key not in result.stdout + result.stderr


def test_a_file_in_the_home_folder_cannot_be_read() -> None:
    secret = Path.home() / f".factory-sandbox-canary-{uuid.uuid4().hex}"
    secret.write_text("the user's private notes")
    try:
        result = run(f"print(open({str(secret)!r}).read())")
    finally:
        secret.unlink()
    assert result.status == CRASHED and "FileNotFoundError" in result.reason
    assert "private notes" not in result.stdout


def test_an_infinite_loop_is_stopped_at_the_time_limit() -> None:
    result = run("while True:\n    pass", Limits(seconds=2, memory_mb=1024))
    assert result.status == TIMEOUT and result.reason.startswith("timeout")
    assert result.seconds < 10


def test_a_memory_hog_is_stopped_at_the_memory_limit() -> None:
    result = run("blocks = []\nwhile True:\n    blocks.append(bytearray(64 << 20))")
    assert result.status == MEMORY and result.reason.startswith("memory_limit")


def test_a_fork_bomb_cannot_start_a_single_process() -> None:
    result = run("import os\nwhile True:\n    os.fork()")
    assert result.status == BLOCKED and "new processes" in result.reason
    raw = run("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nprint(libc.fork(), ctypes.get_errno())")
    assert raw.stdout.split() == ["-1", "11"]  # EAGAIN from the seccomp filter
    threads = run("import threading\nt = threading.Thread(target=print, args=('thread ran',))\nt.start(); t.join()")
    assert threads.status == OK and "thread ran" in threads.stdout


def test_writes_outside_the_working_directory_are_blocked(tmp_path: Path) -> None:
    target = tmp_path / "escaped.txt"
    result = run(f"open({str(target)!r}, 'w').write('x')")
    assert result.status == BLOCKED and "writing outside the working directory" in result.reason
    raw = run(f"import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
              f"print(libc.open({str(target).encode()!r}, 0o101, 0o644), ctypes.get_errno())")
    assert raw.stdout.split()[0] == "-1"
    assert not target.exists()


def test_the_working_directory_is_thrown_away_and_not_named(tmp_path: Path) -> None:
    with tempfile.NamedTemporaryFile(prefix="factory-canary-", dir="/tmp") as canary:
        result = run("import os, glob\nprint(glob.glob('/tmp/factory-*'))\nopen('left.txt', 'w').write('x')\n"
                     "print(os.getcwd())\nraise SystemExit(open('nope'))")
    assert canary.name not in result.stdout  # the host's /tmp is not there
    assert result.stdout.splitlines()[-1] == "/sandbox" and "/sandbox/_launcher.py" in result.stderr
    assert "factory-sandbox-" not in result.stdout + result.stderr  # its random name would change every repair prompt
