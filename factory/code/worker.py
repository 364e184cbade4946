"""Runs inside the sandbox: the solution's process. It runs no code of the solution's until the harness
sends it, then answers the harness's requests (call this function, index that object) until told to stop.

Started by the launcher as `worker.py FD` (FD: its end of a socket to the harness); the standard library
only. Nothing here is trusted by the harness: whatever this process says crosses as plain data or as a
reference (wire.py), and the verdict is written by the harness alone.
"""

import sys
import types

import wire  # the working directory is on a worker's path (launcher.py); this process is not trusted anyway


def main() -> None:
    fd = int(sys.argv[1])
    peer = wire.Peer(fd, strict=False)
    while True:
        try:
            message = wire.receive(fd)
        except wire.WireError:
            return  # the harness is done, or gone
        if message[0] == "load":  # ["load", number, file name, source]: the code to answer for
            _, number, filename, source = message
            module = types.ModuleType("solution")
            module.__file__ = filename
            sys.modules["solution"] = module
            try:
                exec(compile(source, filename, "exec"), module.__dict__)  # noqa: S102 - the sandbox's whole point
                names = {k: v for k, v in vars(module).items() if not (k.startswith("__") and k.endswith("__"))}
                reply = ["ok", number, peer.encode(names)]
            except BaseException as exc:  # noqa: BLE001 - whatever the solution raises, SystemExit included
                error, trace = peer.describe(exc)
                reply = ["raise", number, error, trace]
            wire.send(fd, reply)
        elif message[0] == "do":
            peer.serve(message)
        else:
            return


if __name__ == "__main__":
    main()
