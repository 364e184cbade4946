"""The sandbox against hostile programs: each attack is stopped, with a reason that says why.

Each wall is also tested through ctypes, which passes the audit hooks: the hook only names the
reason, the namespace, the read-only filesystem and the seccomp filter are what stop it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from factory.sandbox import BLOCKED, CRASHED, MEMORY, NOBODY, OK, TIMEOUT, Limits, run_python

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


@contextmanager
def planted(folder: Path, mode: int = 0o644) -> Iterator[Path]:
    """A file of private notes in `folder` (with `mode`) for the length of the block."""
    secret = folder / f".factory-sandbox-canary-{uuid.uuid4().hex}"
    secret.write_text("private notes")
    secret.chmod(mode)
    try:
        yield secret
    finally:
        secret.unlink(missing_ok=True)


def read_back(folder: Path, mode: int = 0o644):  # noqa: ANN201
    """A program that prints a file planted in `folder`: how it ended."""
    with planted(folder, mode) as secret:
        return run(f"print(open({str(secret)!r}).read())")


def test_a_file_in_the_home_folder_cannot_be_read() -> None:
    result = read_back(Path.home())
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


# -- as root: the program is an unprivileged user, not root with a few folders hidden ------------------------------

LIBC = "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
SITE_PACKAGES = Path(pytest.importorskip("pandas").__file__).resolve().parent.parent  # bound into every sandbox
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="the factory does not run as root here")


def test_the_program_holds_no_capability_and_is_not_root() -> None:
    result = run("import os\nstatus = dict(l.split(':', 1) for l in open('/proc/self/status') if l.startswith('Cap'))\n"
                 "print(os.getuid(), os.geteuid(), int(status['CapEff'], 16), int(status['CapPrm'], 16))")
    uid, euid, effective, permitted = result.stdout.split()
    assert (effective, permitted) == ("0", "0")
    if os.geteuid() == 0:
        assert uid == euid == str(NOBODY)


def test_the_filesystem_cannot_be_remounted_to_write_into_site_packages() -> None:
    target = SITE_PACKAGES / f"factory-escape-{uuid.uuid4().hex}.pth"
    result = run(LIBC + "MS_REMOUNT, MS_BIND = 32, 4096\n"
                 "print(libc.mount(None, b'/', None, MS_REMOUNT | MS_BIND, None), ctypes.get_errno())\n"
                 f"print(libc.mount(None, {str(SITE_PACKAGES).encode()!r}, None, MS_REMOUNT | MS_BIND, None), ctypes.get_errno())\n"
                 f"print(libc.open({str(target).encode()!r}, 0o101, 0o644), ctypes.get_errno())")
    try:
        lines = [line.split() for line in result.stdout.splitlines()]
        assert [line[0] for line in lines] == ["-1", "-1", "-1"], result.stdout  # EPERM, EPERM, EROFS or EACCES
        assert not target.exists()
    finally:
        target.unlink(missing_ok=True)


def test_the_hidden_folders_cannot_be_unmounted_to_reach_the_home_folder() -> None:
    with planted(Path.home()) as secret:
        result = run(LIBC + "MNT_DETACH = 2\n"
                     f"for folder in (b'/root', b'/home', b'/tmp', b'/', {str(Path.home()).encode()!r}):\n"
                     "    print(libc.umount2(folder, MNT_DETACH), ctypes.get_errno())\n"
                     f"print(open({str(secret)!r}).read())")
    assert all(line.split()[0] == "-1" for line in result.stdout.splitlines()[:5]), result.stdout
    assert result.status == CRASHED and ("FileNotFoundError" in result.reason or "PermissionError" in result.reason)
    assert "private notes" not in result.stdout


def test_a_root_only_file_outside_the_bound_folders_is_not_there() -> None:
    result = read_back(Path("/var/tmp"), 0o600)
    assert result.status == CRASHED and "FileNotFoundError" in result.reason
    assert "private notes" not in result.stdout


@as_root
def test_a_root_only_file_inside_a_bound_folder_cannot_be_read() -> None:
    """The runtime's folders are bound: a 0600 file of root's there is visible, and refused to NOBODY."""
    with planted(SITE_PACKAGES, 0o600) as secret:
        result = run(f"print(open({str(secret)!r}).read())")
        raw = run(LIBC + f"print(libc.open({str(secret).encode()!r}, 0), ctypes.get_errno())")
    assert result.status == CRASHED and "PermissionError" in result.reason
    assert "private notes" not in result.stdout
    assert raw.stdout.split() == ["-1", "13"]  # EACCES, also past the audit hooks


def test_an_output_that_links_to_a_host_file_is_not_read_back() -> None:
    """The runner reads the outputs, maybe as root: a link named like an output must not lend it root's eyes."""
    with planted(Path.home()) as secret:
        result = run(f"import os\nos.symlink({str(secret)!r}, 'out.csv')\nos.symlink('/etc/hostname', 'host.txt')",
                     outputs=("out.csv", "host.txt"))
    assert result.status == OK and result.files == {}


def _defunct_bwraps() -> set[int]:
    found = set()
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except OSError:
            continue
        if fields.get("Name") == "bwrap" and fields.get("State", "").startswith("Z"):
            found.add(int(status.parent.name))
    return found


def test_no_process_outlives_a_run_not_even_a_defunct_bwrap() -> None:
    before = _defunct_bwraps()
    run("print('done')")
    run("while True:\n    pass", Limits(seconds=1, memory_mb=1024))
    run("import threading, time\nthreading.Thread(target=time.sleep, args=(60,), daemon=False).start()\nprint('left a thread')")
    time.sleep(0.5)
    assert _defunct_bwraps() - before == set()


def test_as_an_unprivileged_user_the_same_walls_hold(tmp_path: Path) -> None:
    """Run the whole sandbox from a process of an ordinary user (NOBODY), where the machine lets that user run
    this Python and make user namespaces."""
    if os.geteuid() != 0:
        pytest.skip("needs root to start a process as another user")
    try:
        probe = subprocess.run([sys.executable, "-c", "import factory.sandbox, pyseccomp"], user=NOBODY, group=NOBODY,
                               extra_groups=[], capture_output=True, cwd="/")
        refused = probe.stderr.decode()[-200:] if probe.returncode else ""
    except PermissionError as exc:
        refused = str(exc)
    if refused:
        pytest.skip(f"this Python cannot run as uid {NOBODY} here: {refused}")
    program = (LIBC + "print(libc.mount(None, b'/', None, 32 | 4096, None))\n"
               "status = dict(l.split(':', 1) for l in open('/proc/self/status') if l.startswith('Cap'))\n"
               "print(int(status['CapEff'], 16))\n"
               "import socket\nsocket.create_connection(('127.0.0.1', 22), timeout=2)")
    script = ("import json, sys\nfrom factory.sandbox import run_python, Limits\n"
              f"r = run_python({{'p.py': {program!r}}}, 'p.py', limits=Limits(seconds=10, memory_mb=1024))\n"
              "print(json.dumps([r.status, r.stdout, r.reason]))")
    done = subprocess.run([sys.executable, "-c", script], user=NOBODY, group=NOBODY, extra_groups=[], capture_output=True,
                          cwd="/", env={"PATH": os.environ["PATH"], "TMPDIR": "/tmp"}, text=True)
    if "SandboxUnavailable" in done.stderr:
        pytest.skip(f"no user namespaces for an ordinary user here: {done.stderr[-300:]}")
    status, stdout, reason = json.loads(done.stdout.splitlines()[-1])
    assert stdout.split()[:2] == ["-1", "0"] and status == BLOCKED and "network access" in reason
