"""Run code a model wrote, isolated: bubblewrap namespaces, resource limits, a seccomp filter, audit hooks.

What one run gets (`run_python`):
- **bubblewrap** (`bwrap`, Debian's `bubblewrap`): new user, PID, network, IPC and UTS namespaces (no
  network at all, not even the host's loopback); the whole filesystem read-only; `/home`, `/root` and
  `/tmp` replaced by empty in-memory folders (the Python runtime is bound back read-only when it lives
  in a home folder); a throwaway working directory, the only writable place, deleted afterwards; an
  empty environment (no keys, no tokens; HOME is the working directory).
- **limits** set by a launcher before the program runs: wall-clock time (the whole namespace is
  killed), CPU seconds, address space (memory), file size, no core dumps, and no new processes
  (a seccomp filter refuses fork, vfork and clone without CLONE_THREAD; threads still work).
- **audit hooks** turn the attempts the walls stop anyway (a socket, a subprocess, a write outside the
  working directory) into a clear `sandbox: ... blocked` error, so the reason can be reported.

What it does not isolate: the program can read world-readable files outside the home folders
(`/etc`, `/usr`, the Python installation), and it shares the kernel (a kernel exploit escapes it).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from factory.errors import FactoryError

LAUNCHER = Path(__file__).with_name("launcher.py")
# The run's outcome, from the most specific evidence: a blocked action, the limits, then the exit.
OK, TIMEOUT, MEMORY, BLOCKED, CRASHED = "ok", "timeout", "memory_limit", "blocked", "crashed"
_BLOCKED = re.compile(r"sandbox: ([a-z ]+) (?:is|are) blocked")
UNAVAILABLE = 86  # the launcher's exit code when it cannot set the limits (launcher.py)
OUTPUT_CHARS = 8000
WORKDIR_SHOWN = "/sandbox"  # how outputs name the working directory  # stdout and stderr kept per run (the tail: a traceback ends there)


class SandboxUnavailable(FactoryError):
    """The sandbox cannot run here (no bubblewrap, or user namespaces are off)."""


@dataclass(frozen=True)
class Limits:
    """What one sandboxed run may use."""

    seconds: float = 30.0
    memory_mb: int = 2048
    file_mb: int = 256


@dataclass
class SandboxResult:
    """How a sandboxed run ended; `files` holds the outputs it was asked to return that exist."""

    status: str
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float
    files: dict[str, bytes] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def reason(self) -> str:
        """One line saying why the run failed ('' when it did not)."""
        if self.ok:
            return ""
        if self.status == TIMEOUT:
            return "timeout: the program ran past its time limit"
        if self.status == MEMORY:
            return "memory_limit: the program ran out of its memory limit"
        blocked = blocked_action(self.stderr)
        if self.status == BLOCKED and blocked:
            return f"blocked: {blocked} (not allowed in the sandbox)"
        last = next((line for line in reversed(self.stderr.strip().splitlines()) if line.strip()), "")
        return f"crashed: exit code {self.returncode}" + (f": {last.strip()[:300]}" if last else "")


def blocked_action(text: str) -> str | None:
    """What the sandbox blocked, as its audit hooks name it in an error ('network access', ...), or None."""
    found = _BLOCKED.search(text)
    return found.group(1) if found else None


def bwrap() -> str:
    """The bubblewrap binary, or SandboxUnavailable saying how to get it."""
    found = shutil.which("bwrap")
    if found is None:
        raise SandboxUnavailable("running model-written code needs bubblewrap, which is not installed: "
                                 "`sudo apt-get install bubblewrap` (Debian, Ubuntu) or `sudo dnf install bubblewrap`")
    return found


def _runtime_binds() -> list[str]:
    """Read-only binds that bring the Python runtime back when it lives under a hidden folder."""
    hidden = ("/home", "/root", "/tmp")
    roots = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.executable)}
    roots |= {Path(p).resolve() for p in sys.path if p and Path(p).is_dir() and "site-packages" in p}
    args: list[str] = []
    for root in sorted(roots):
        if root.is_file():
            root = root.parent
        if any(str(root).startswith(h + "/") for h in hidden):
            args += ["--ro-bind", str(root), str(root)]
    return args


def _command(workdir: Path, script: str, limits: Limits) -> list[str]:
    python = str(Path(sys.executable))
    env = {"HOME": str(workdir), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0",
           # One thread per math library: the address-space limit counts every thread's reserved stack.
           "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [bwrap(), "--ro-bind", "/", "/", "--tmpfs", "/home", "--tmpfs", "/root", "--tmpfs", "/tmp",
               *_runtime_binds(), "--bind", str(workdir), str(workdir), "--proc", "/proc", "--dev", "/dev",
               "--chdir", str(workdir), "--unshare-all", "--die-with-parent", "--new-session", "--clearenv"]
    for name, value in env.items():
        command += ["--setenv", name, value]
    return command + [python, "-I", str(workdir / "_launcher.py"), str(int(limits.memory_mb)),
                      str(int(limits.seconds) + 1), str(int(limits.file_mb)), script]


def run_python(files: Mapping[str, str | bytes], script: str, *, limits: Limits = Limits(),
               outputs: tuple[str, ...] = ()) -> SandboxResult:
    """Write `files` into a fresh working directory, run `script` (one of them) there, isolated, and
    return how it ended with the `outputs` files it wrote. Never raises for anything the program does."""
    with tempfile.TemporaryDirectory(prefix="factory-sandbox-") as folder:
        workdir = Path(folder).resolve()
        for name, content in files.items():
            target = workdir / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        shutil.copyfile(LAUNCHER, workdir / "_launcher.py")
        started = time.monotonic()
        process = subprocess.Popen(_command(workdir, script, limits), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   stdin=subprocess.DEVNULL, start_new_session=True, env={"PATH": os.environ.get("PATH", "")})
        timed_out = False
        try:
            out, err = process.communicate(timeout=limits.seconds)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(process.pid, signal.SIGKILL)  # bwrap is PID 1's parent: the namespace goes with it
            out, err = process.communicate()
        seconds = time.monotonic() - started
        # The throwaway folder's random name is not the program's business: a traceback that names it
        # would make every repair prompt built from it new, and a resumed build would re-send them.
        stdout = out.decode("utf-8", "replace").replace(str(workdir), WORKDIR_SHOWN)[-OUTPUT_CHARS:]
        stderr = err.decode("utf-8", "replace").replace(str(workdir), WORKDIR_SHOWN)[-OUTPUT_CHARS:]
        if not (workdir / ".started").exists() or (process.returncode == UNAVAILABLE and "sandbox unavailable:" in stderr):
            raise SandboxUnavailable(f"the sandbox could not start: {stderr.strip()[:300]}")
        status = _status(process.returncode, stderr, timed_out)
        found = {name: (workdir / name).read_bytes() for name in outputs if (workdir / name).is_file()}
        return SandboxResult(status, process.returncode, stdout, stderr, seconds, found)


def _status(returncode: int | None, stderr: str, timed_out: bool) -> str:
    if timed_out or returncode in (-signal.SIGXCPU, 128 + signal.SIGXCPU):
        return TIMEOUT
    if returncode == 0:
        return OK
    if _BLOCKED.search(stderr):
        return BLOCKED
    if "MemoryError" in stderr or "Cannot allocate memory" in stderr or "std::bad_alloc" in stderr:
        return MEMORY
    return CRASHED
