"""Run code a model wrote, isolated: bubblewrap namespaces, an unprivileged user, limits, seccomp, audit hooks.

What one run gets (`run_python`):
- **bubblewrap** (`bwrap`, Debian's `bubblewrap`): new PID, network, IPC and UTS namespaces (no
  network at all, not even the host's loopback). The filesystem is built, not inherited: the system
  folders (`/usr`, `/bin`, `/lib*`, `/sbin`, `/etc`) and the Python runtime's own folders, read-only;
  an empty `/tmp`; a fresh `/proc` and a minimal `/dev`; and a throwaway working directory, seen as
  `/sandbox`, the only writable place, deleted afterwards. Nothing else of the host exists inside:
  no home folder, no `/var`, `/srv`, `/opt` or `/mnt`, no run directory. The environment is empty (no
  keys, no tokens; HOME is the working directory).
- **an unprivileged user.** Run by root (Docker, Colab, CI), bubblewrap would keep root's
  capabilities inside: the launcher instead drops to uid/gid 65534 (`nobody`) with no supplementary
  groups before the program starts, which clears every capability, and checks that none is left.
  The program is then an ordinary user of the host's kernel: it cannot mount, unmount or remount
  anything, and cannot read a file that only root (or any real user) may read, such as a 0600 file
  in the bound runtime folders. Run by a user, bubblewrap maps that user into a user namespace with
  no capabilities; the program keeps that user's uid, so a file of the user's inside the bound
  runtime folders is readable (the runtime is the only place of the user's that is bound).
- **limits** set by a launcher before the program runs: wall-clock time (the whole namespace is
  killed), CPU seconds, address space (memory), file size, no core dumps, and no new processes
  (a seccomp filter refuses fork, vfork and clone without CLONE_THREAD; threads still work). The
  same filter refuses the calls that change mounts, namespaces and other processes (mount, umount2,
  pivot_root, unshare, setns, ptrace, ...), a second wall behind the missing capabilities.
- **audit hooks** turn the attempts the walls stop anyway (a socket, a subprocess, a write outside the
  working directory) into a clear `sandbox: ... blocked` error, so the reason can be reported.
- **no leftovers**: a small reaper runs bubblewrap as a child subreaper and collects every process
  of the run, so no defunct `bwrap` is left for an init process that a container may not have.

What it does not isolate: the program can read world-readable files in the system folders (`/etc`,
`/usr`) and the Python installation, it sees the host's CPU and kernel, and it shares the kernel (a
kernel exploit escapes it).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from factory.errors import FactoryError

LAUNCHER = Path(__file__).with_name("launcher.py")
REAPER = Path(__file__).with_name("reaper.py")
TIMED_OUT = 124  # the reaper's exit status when the wall-clock limit ended the run (reaper.py)
BACKSTOP_SECONDS = 15  # past the limit, the runner kills the reaper itself
NOBODY = 65534  # the uid and gid a program runs as when the factory runs as root
# Bound read-only into every sandbox; the rest of the host's filesystem is not there.
SYSTEM_FOLDERS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
# The run's outcome, from the most specific evidence: a blocked action, the limits, then the exit.
OK, TIMEOUT, MEMORY, BLOCKED, CRASHED = "ok", "timeout", "memory_limit", "blocked", "crashed"
_BLOCKED = re.compile(r"sandbox: ([a-z ]+) (?:is|are) blocked")
OUTPUT_CHARS = 8000  # stdout and stderr kept per run (the tail: a traceback ends there)
WORKDIR_SHOWN = "/sandbox"  # where the program sees its working directory


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
    report: str | None = None  # what the factory's own script reported (a run with workers), None if nothing

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


def privileged() -> bool:
    """True when the factory runs as root: the program then runs as NOBODY, not in a user namespace."""
    return os.geteuid() == 0


def _runtime_roots() -> list[str]:
    """Folders that hold the Python runtime and its packages, outside the system folders, outermost only."""
    roots = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)}
    roots |= {Path(sys.executable).parent, Path(sys.executable).resolve().parent}
    roots |= {Path(p).resolve() for p in sys.path if p and "site-packages" in p and Path(p).is_dir()}
    outside = [r for r in roots if not any(r == Path(s) or r.is_relative_to(s) for s in SYSTEM_FOLDERS)]
    return sorted({str(r) for r in outside if not any(r != o and r.is_relative_to(o) for o in outside)})


def _filesystem(workdir: Path) -> list[str]:
    """The program's view: the system folders and the runtime read-only, the working directory, nothing else.

    Not the host's `/` with a few folders hidden: a file left in /var, /srv, /opt or a home folder
    is simply not there."""
    args: list[str] = []
    for folder in SYSTEM_FOLDERS:
        path = Path(folder)
        if path.is_symlink():  # merged /usr: /bin -> usr/bin
            args += ["--symlink", os.readlink(path), folder]
        elif path.is_dir():
            args += ["--ro-bind", folder, folder]
    args += ["--perms", "0755", "--tmpfs", "/tmp"]  # before the runtime: a virtual environment may live under /tmp
    made: set[Path] = set()
    for root in _runtime_roots():
        for parent in reversed(Path(root).parents[:-1]):  # bubblewrap would copy the host's modes (/root: 0700)
            if parent not in made:
                args += ["--perms", "0755", "--dir", str(parent)]
                made.add(parent)
        args += ["--ro-bind", root, root]
    return args + ["--bind", str(workdir), WORKDIR_SHOWN, "--proc", "/proc", "--dev", "/dev",
                   "--chdir", WORKDIR_SHOWN]


def _command(workdir: Path, script: str, limits: Limits, status_fd: int, workers: tuple[str, ...]) -> list[str]:
    env = {"HOME": WORKDIR_SHOWN, "TMPDIR": WORKDIR_SHOWN, "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0",
           # One thread per math library: the address-space limit counts every thread's reserved stack.
           "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    if privileged():
        # bubblewrap run by root keeps root's capabilities inside and makes no user namespace: keep only
        # what the launcher needs to become NOBODY (which clears them all), and no namespace of users.
        isolation = ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
                     "--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        run_as = str(NOBODY)
    else:  # a user namespace mapped to the invoking user, with no capabilities in it
        isolation, run_as = ["--unshare-all", "--cap-drop", "ALL"], "-"
    command = [bwrap(), *_filesystem(workdir), *isolation, "--die-with-parent", "--new-session", "--clearenv"]
    for name, value in env.items():
        command += ["--setenv", name, value]
    launcher = [str(Path(sys.executable)), "-I", f"{WORKDIR_SHOWN}/_launcher.py", str(int(limits.memory_mb)),
                str(int(limits.seconds) + 1), str(int(limits.file_mb)), run_as, str(status_fd), script, *workers]
    return [str(Path(sys.executable)), "-I", "-S", str(REAPER), str(limits.seconds), *command, *launcher]


def run_python(files: Mapping[str, str | bytes], script: str, *, limits: Limits = Limits(),
               outputs: tuple[str, ...] = (), workers: tuple[str, ...] = ()) -> SandboxResult:
    """Write `files` into a fresh working directory, run `script` (one of them) there, isolated, and
    return how it ended with the `outputs` files it wrote. Never raises for anything the program does.

    With `workers` (scripts among `files`), `script` is the factory's own and trusted: each worker runs
    in a process of its own beside it (launcher.py), and `script` may report over the status pipe,
    a line "TOKEN TEXT" with the token it finds in `.report-token` (which it must delete before any
    worker runs untrusted code); the result's `report` is that TEXT. Nothing else is taken as a report."""
    with tempfile.TemporaryDirectory(prefix="factory-sandbox-") as folder:
        workdir = Path(folder).resolve()
        for name, content in files.items():
            target = workdir / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        shutil.copyfile(LAUNCHER, workdir / "_launcher.py")
        token = secrets.token_hex(16) if workers else ""
        if workers:
            (workdir / ".report-token").write_text(token)
        if privileged():  # NOBODY may write here and nowhere else; root (without CAP_DAC_OVERRIDE) reads the launcher
            os.chown(workdir, NOBODY, 0)
            workdir.chmod(0o750)
        started = time.monotonic()
        status_read, status_write = os.pipe()
        try:
            process = subprocess.Popen(_command(workdir, script, limits, status_write, workers), stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, start_new_session=True,
                                       pass_fds=(status_write,), env={"PATH": os.environ.get("PATH", "")})
            os.close(status_write)
            status_write = -1
            try:  # the reaper enforces the limit; this is the backstop should the reaper itself hang
                out, err = process.communicate(timeout=limits.seconds + BACKSTOP_SECONDS)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                out, err = process.communicate()
            os.set_blocking(status_read, False)  # a writer still alive after the backstop must not hang the runner
            status = _read_all(status_read).decode("utf-8", "replace").split("\n")
        finally:
            for fd in (status_read, status_write):
                if fd >= 0:
                    os.close(fd)
        seconds = time.monotonic() - started
        # The throwaway folder's random name is not the program's business: a traceback that names it
        # would make every repair prompt built from it new, and a resumed build would re-send them.
        stdout = out.decode("utf-8", "replace").replace(str(workdir), WORKDIR_SHOWN)[-OUTPUT_CHARS:]
        stderr = err.decode("utf-8", "replace").replace(str(workdir), WORKDIR_SHOWN)[-OUTPUT_CHARS:]
        if status[0] != "started":
            raise SandboxUnavailable(_unavailable(stderr))
        reports = [line[len(token) + 1:] for line in status[1:] if token and line.startswith(token + " ")]
        found = {name: data for name in outputs if (data := _read_output(workdir, name)) is not None}
        return SandboxResult(_status(process.returncode, stderr), process.returncode, stdout, stderr, seconds, found,
                             reports[0] if len(reports) == 1 else None)


def _read_all(fd: int) -> bytes:
    """What the pipe holds now; its writers have exited, or (after the backstop) may never write again."""
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _read_output(workdir: Path, name: str) -> bytes | None:
    """The bytes of a regular file the program wrote, or None. Never through a link: the program could
    leave `out.csv` pointing at any file of the host, which the runner, maybe root, would read for it."""
    if "/" in name or name in (".", ".."):
        raise ValueError(f"an output is a file name in the working directory, not a path: {name!r}")
    folder = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        handle = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=folder)
    except OSError:  # missing, or a link (ELOOP)
        return None
    finally:
        os.close(folder)
    with os.fdopen(handle, "rb") as stream:
        return stream.read() if stat.S_ISREG(os.fstat(stream.fileno()).st_mode) else None


def _unavailable(stderr: str) -> str:
    why = stderr.strip()[-300:] or "no error message"
    if "namespace" in stderr.lower():
        why += (" (user namespaces are off for unprivileged users: enable them, e.g. `sudo sysctl -w "
                "kernel.unprivileged_userns_clone=1` on Debian, or the AppArmor profile for bwrap on Ubuntu 24.04)")
    return f"the sandbox could not start: {why}"


@cache
def _checked(binary: str) -> bool:  # noqa: ARG001 - the cache's key: another bubblewrap is checked anew
    result = run_python({"check.py": "print('ok')"}, "check.py", limits=Limits(seconds=30, memory_mb=1024))
    if not result.ok or result.stdout.strip() != "ok":
        raise SandboxUnavailable(f"the sandbox could not run a trivial program: {result.reason}")
    return True


def check() -> None:
    """Raise SandboxUnavailable, saying what to do, unless a trivial program runs in the sandbox here.

    A recipe that needs the sandbox calls it before its first request (none is paid for in vain);
    the answer is kept for the process once it is yes."""
    _checked(bwrap())


def _status(returncode: int | None, stderr: str) -> str:
    if returncode in (TIMED_OUT, -signal.SIGXCPU, 128 + signal.SIGXCPU):
        return TIMEOUT
    if returncode == 0:
        return OK
    if _BLOCKED.search(stderr):
        return BLOCKED
    if "MemoryError" in stderr or "Cannot allocate memory" in stderr or "std::bad_alloc" in stderr:
        return MEMORY
    return CRASHED
