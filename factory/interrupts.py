"""Ctrl+C that is never lost.

Python raises KeyboardInterrupt wherever the main thread happens to be when SIGINT arrives. If that
is a weakref callback or a `__del__` (garbage collection during an import, say), the exception is
printed as "ignored" and the program carries on: a build pressed with Ctrl+C would finish and exit 0.
`catch_ctrl_c()` records every press, so `check()` at the next phase boundary raises it again.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

_pressed = False


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    global _pressed
    _pressed = True
    raise KeyboardInterrupt


@contextmanager
def catch_ctrl_c() -> Iterator[None]:
    """Record Ctrl+C presses while the block runs (main thread only; elsewhere a no-op)."""
    global _pressed
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _pressed = False
    previous = signal.signal(signal.SIGINT, _on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _pressed = False


def handled() -> None:
    """A command whose normal way to stop is Ctrl+C (a server) took the press: nothing to raise again."""
    global _pressed
    _pressed = False


def check() -> None:
    """Raise KeyboardInterrupt if Ctrl+C was pressed and something swallowed it."""
    if _pressed:
        raise KeyboardInterrupt


@contextmanager
def asyncio_handles_ctrl_c() -> Iterator[None]:
    """Give SIGINT back to Python's default for the block, so that asyncio.run installs its own handler,
    which cancels the running task (its `finally` blocks close clients and flush rows) instead of
    raising in the middle of a callback."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is not _on_sigint:
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, _on_sigint)
