"""Decoding speed as measured on this machine, per local model: what `factory models` shows.

A speed written in a description is a promise about someone else's machine (the 1.5B model's "~30
tok/s on 2 cores" was 6 to 12 here). Each build with a local model records the tokens it generated
and the seconds it took, per model and CPU, and `factory models` prints the last measurement, or
nothing where there is none.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

MIN_TOKENS = 200  # fewer tokens say more about start-up than about decoding speed


def _file() -> Path:
    from factory.generators.catalog import cache_dir

    return cache_dir() / "measured-speed.json"


def _key(model: str) -> str:
    from factory.generators.llamacpp_probe import cpu_signature

    return f"{model}|{cpu_signature()}"


def _read() -> dict[str, Any]:
    try:
        data = json.loads(_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def record(model: str, tokens: int, seconds: float) -> None:
    """Keep a build's decoding speed for `model` on this CPU (too few tokens are not a measurement)."""
    if tokens < MIN_TOKENS or seconds <= 0:
        return
    from factory.run.store import atomic_write_text

    data = _read()
    data[_key(model)] = {"tokens_per_s": round(tokens / seconds, 1), "tokens": tokens, "seconds": round(seconds, 1),
                         "date": time.strftime("%Y-%m-%d")}
    with contextlib.suppress(OSError):  # a read-only cache only costs the measurement
        atomic_write_text(_file(), json.dumps(data, indent=1, sort_keys=True) + "\n")


def measured(model: str) -> dict[str, Any] | None:
    """The last measurement of `model` on this CPU, or None."""
    return _read().get(_key(model))
