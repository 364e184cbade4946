"""Runs inside the sandbox, before the model's program: limits, then the program.

Standalone on purpose (it runs with `python -I` in a namespace where the factory's own source may be
hidden): the standard library and pyseccomp only.
Usage: python -I launcher.py MEMORY_MB CPU_SECONDS FILE_MB SCRIPT
"""

import errno
import os
import resource
import runpy
import sys


def limit(memory_mb: int, cpu_seconds: int, file_mb: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds))
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_mb << 20, file_mb << 20))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def no_new_processes() -> None:
    """A seccomp filter: fork, vfork and clone without CLONE_THREAD fail (threads still work).

    Unlike RLIMIT_NPROC it also holds when the caller is root, whose process count is never limited."""
    import pyseccomp as seccomp

    rules = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    for call in ("fork", "vfork"):
        rules.add_rule(seccomp.ERRNO(errno.EAGAIN), call)
    clone_thread = 0x00010000
    rules.add_rule(seccomp.ERRNO(errno.EAGAIN), "clone", seccomp.Arg(0, seccomp.MASKED_EQ, clone_thread, 0))
    rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")  # its flags are out of a filter's reach; libc falls back to clone
    rules.load()


UNAVAILABLE = 86  # the exit code that tells the runner the sandbox, not the program, failed
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
NETWORK_EVENTS = ("socket.__new__", "socket.connect", "socket.bind", "socket.getaddrinfo", "socket.sendto")
PROCESS_EVENTS = ("os.fork", "os.forkpty", "os.posix_spawn", "os.spawn", "os.exec", "os.system", "subprocess.Popen")


def audit(workdir: str):  # noqa: ANN201
    """An audit hook that names what the walls stop anyway (the network namespace, the seccomp filter,
    the read-only filesystem), so that the run's reason is clear. Not a wall itself: ctypes can pass it."""
    inside = workdir.rstrip("/") + "/"

    def writes(mode: object, flags: object) -> bool:
        if isinstance(flags, int) and flags & WRITE_FLAGS:
            return True
        return isinstance(mode, str) and any(c in mode for c in "wax+")

    def hook(event: str, args: tuple) -> None:
        if event in NETWORK_EVENTS:
            raise PermissionError("sandbox: network access is blocked")
        if event in PROCESS_EVENTS:
            raise PermissionError("sandbox: new processes are blocked")
        if event == "open" and isinstance(args[0], (str, bytes)) and writes(args[1], args[2]):
            path = os.path.realpath(os.fsdecode(args[0]))
            if not (path + "/").startswith(inside) and path != "/dev/null":
                raise PermissionError(f"sandbox: writing outside the working directory is blocked ({path})")

    return hook


def main() -> None:
    memory_mb, cpu_seconds, file_mb, script = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    workdir = os.getcwd()
    open(".started", "w").close()  # tells the runner that the sandbox itself came up
    limit(memory_mb, cpu_seconds, file_mb)
    try:
        no_new_processes()
    except (ImportError, OSError) as exc:  # fail closed: no program runs without its process limit
        print(f"sandbox unavailable: the seccomp filter could not be loaded ({exc})", file=sys.stderr)
        sys.exit(UNAVAILABLE)
    sys.path.insert(0, workdir)
    sys.argv = [script]
    sys.addaudithook(audit(workdir))
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
