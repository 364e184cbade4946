"""Start the tests' loopback OpenAI server in its own process (so it does not share the client's GIL)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SERVER = Path(__file__).resolve().parents[1] / "tests" / "loopback_openai.py"


@contextmanager
def loopback_server(delay: float) -> Iterator[str]:
    """Yield the base URL of a loopback server that answers every request after `delay` seconds."""
    proc = subprocess.Popen([sys.executable, str(SERVER), "--delay", str(delay)], stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())  # type: ignore[union-attr]
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait()
