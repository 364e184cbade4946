"""Runs bubblewrap, enforces the wall-clock limit, and reaps every process the sandbox leaves behind.

Why a process of its own: bubblewrap's outer process exits as soon as the sandbox's init reports the
program's exit status, without waiting for that init, which is then re-parented to PID 1. In a
container without an init process (most Docker images) nobody ever collects it, and one defunct
`bwrap` piles up per run. This process is a child subreaper: the orphaned init comes back to it, and
it reaps every child before it exits, so nothing outlives the run.

Standalone on purpose (run with `python -I -S`): the standard library only.
Usage: python -I -S reaper.py SECONDS COMMAND [ARG ...]
Exit status: the command's (128 + N when signal N ended it), or TIMED_OUT when the limit stopped it.
"""

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER = 1, 36
TIMED_OUT = 124  # the exit status that tells the runner the wall-clock limit ended the run


def main() -> int:
    seconds, command = float(sys.argv[1]), sys.argv[2:]
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)  # the factory gone: stop the sandbox, reap, exit
    stopped = {"timeout": False}
    child = os.fork()
    if child == 0:
        os.execv(command[0], command)

    def stop(signum: int, _frame: object) -> None:
        stopped["timeout"] = stopped["timeout"] or signum == signal.SIGALRM
        try:  # bubblewrap's --die-with-parent then kills the sandbox's init, and with it every process inside
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass

    signal.signal(signal.SIGALRM, stop)
    signal.signal(signal.SIGTERM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    if os.getppid() == 1:  # the parent died before PDEATHSIG was armed
        stop(signal.SIGTERM, None)
    status = 0
    while True:  # every child, the orphaned sandbox init included, until none is left
        try:
            pid, raw = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        if pid == child:
            signal.setitimer(signal.ITIMER_REAL, 0)
            code = os.waitstatus_to_exitcode(raw)
            status = code if code >= 0 else 128 - code
    return TIMED_OUT if stopped["timeout"] else status


if __name__ == "__main__":
    sys.exit(main())
