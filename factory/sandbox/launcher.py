"""Runs inside the sandbox, before the model's program: limits, then the program.

Standalone on purpose (it runs with `python -I` in a namespace where the factory's own source may be
hidden): the standard library and pyseccomp only.
Usage: python -I launcher.py MEMORY_MB CPU_SECONDS FILE_MB RUN_AS STATUS_FD SCRIPT [WORKER ...]
RUN_AS: the uid (and gid) to become before the program runs, or "-" to stay (a user namespace already
holds no capabilities). STATUS_FD: a pipe to the runner; "started" goes there once every wall is up,
and it is closed before the program runs, so the program can neither fake nor erase that signal.

With WORKERs, SCRIPT is the factory's own (the code harness), and each WORKER a process of its own that
runs code the factory does not trust: forked before any wall is up, it raises its own walls, keeps only
its end of a socket to SCRIPT (and stdout, stderr), and runs `WORKER FD`. SCRIPT then runs as
`SCRIPT STATUS_FD FD:PID ...`, keeps the status pipe to report on, and is not dumpable, so that no
worker, though of the same uid, can reach its memory or descriptors through /proc.
"""

import errno
import os
import resource
import runpy
import socket
import sys


def limit(memory_mb: int, cpu_seconds: int, file_mb: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds))
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_mb << 20, file_mb << 20))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


# Calls that change mounts, namespaces, other processes or the kernel's keyrings: the missing
# capabilities refuse them already; the filter refuses them again, whatever the uid.
PRIVILEGED_CALLS = ("mount", "umount2", "pivot_root", "chroot", "unshare", "setns", "ptrace", "process_vm_writev",
                    "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
                    "add_key", "request_key", "keyctl", "bpf", "userfaultfd", "perf_event_open")


def become(uid: int) -> None:
    """Drop to `uid`/`uid` with no supplementary groups; fail unless no capability is left."""
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)  # from root to another uid: the kernel clears every capability
    with open("/proc/self/status", encoding="ascii") as status:
        held = {k: v.strip() for k, v in (line.split(":", 1) for line in status if line.startswith("Cap"))}
    if os.getuid() != uid or os.geteuid() != uid or int(held.get("CapEff", "1"), 16) or int(held.get("CapPrm", "1"), 16):
        raise OSError(f"still privileged after dropping to {uid}: {held}")


def seccomp_filter() -> None:
    """A seccomp filter: fork, vfork and clone without CLONE_THREAD fail (threads still work), and so
    does every call in PRIVILEGED_CALLS.

    Unlike RLIMIT_NPROC it also holds when the caller is root, whose process count is never limited."""
    import pyseccomp as seccomp

    rules = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    for call in ("fork", "vfork"):
        rules.add_rule(seccomp.ERRNO(errno.EAGAIN), call)
    clone_thread = 0x00010000
    rules.add_rule(seccomp.ERRNO(errno.EAGAIN), "clone", seccomp.Arg(0, seccomp.MASKED_EQ, clone_thread, 0))
    rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")  # its flags are out of a filter's reach; libc falls back to clone
    for call in PRIVILEGED_CALLS:
        try:
            rules.add_rule(seccomp.ERRNO(errno.EPERM), call)
        except OSError:  # a call this libseccomp does not know (EINVAL): the capabilities still refuse it
            pass
    rules.load()


UNAVAILABLE = 86  # the exit code when a wall cannot be raised ("started" is then never sent: the runner's signal)
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


def walls(run_as: str) -> None:
    """The user and the seccomp filter; on failure, exit saying the sandbox is unavailable (fail closed:
    no program runs with privileges or without its walls)."""
    try:
        if run_as != "-":
            become(int(run_as))
        seccomp_filter()
    except (ImportError, OSError) as exc:
        print(f"sandbox unavailable: {exc}", file=sys.stderr)
        sys.stdout.flush()
        os._exit(UNAVAILABLE)


def non_dumpable() -> None:
    """No process of the same uid may read or write this one's memory, files or descriptors through /proc."""
    import ctypes

    pr_set_dumpable = 4
    if ctypes.CDLL(None, use_errno=True).prctl(pr_set_dumpable, 0, 0, 0, 0) != 0:
        raise OSError("prctl(PR_SET_DUMPABLE, 0) failed")


def start_worker(script: str, run_as: str, workdir: str, keep: int) -> int:
    """Fork a worker that runs `script` with its end of a socket (fd `keep`) and nothing else of ours."""
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        os.closerange(3, keep)
        os.closerange(keep + 1, 1 << 16)
        walls(run_as)
        non_dumpable()
        sys.path.insert(0, workdir)
        sys.argv = [script, str(keep)]
        sys.addaudithook(audit(workdir))
        runpy.run_path(script, run_name="__main__")
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - the worker's end, never the launcher's code after it
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def main() -> None:
    memory_mb, cpu_seconds, file_mb = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    run_as, status_fd, script, workers = sys.argv[4], int(sys.argv[5]), sys.argv[6], sys.argv[7:]
    workdir = os.getcwd()
    limit(memory_mb, cpu_seconds, file_mb)  # as root: the hard limits cannot be raised again once dropped
    # Workers first, each forked before any wall is up (the filter refuses fork) and raising its own.
    channels = []
    for worker in workers:
        ours, theirs = (end.detach() for end in socket.socketpair())  # raw descriptors: os.read and os.write
        pid = start_worker(worker, run_as, workdir, theirs)
        os.close(theirs)
        channels.append(f"{ours}:{pid}")
    walls(run_as)
    if workers:  # the factory's own script: it keeps the status pipe for its report, and its memory to itself
        non_dumpable()
    os.write(status_fd, b"started\n")  # tells the runner that the sandbox itself came up
    if workers:
        sys.argv = [script, str(status_fd), *channels]
    else:
        os.close(status_fd)
        sys.path.insert(0, workdir)
        sys.argv = [script]
    sys.addaudithook(audit(workdir))
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
