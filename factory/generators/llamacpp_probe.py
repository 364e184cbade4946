"""Which way of running llama.cpp works on this CPU, found once in a child process.

A llama.cpp build can pass every check and still die with signal 4 (illegal instruction) on its
first decode: it repacks the weights for the fastest kernels the CPU *advertises* (AMX, say), and
some virtual machines advertise instructions that then fault. A crash like that would take the whole
build with it, so the first load of a model on a machine runs a tiny decode in a child process for
each path in `PATHS`, best first, and uses the first that survives. The answer is cached per
llama-cpp-python version, CPU and model file, in the model cache's folder.

Run as `python -m factory.generators.llamacpp_probe MODEL_PATH PATH_NAME` it is that child.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from factory.errors import GenerationError

log = logging.getLogger(__name__)

# Best first. "default": llama.cpp as built (it may repack weights for AMX or other extra buffer
# types). "no_repack": the model parameter use_extra_bufts=False, plain CPU buffers, which run on
# any CPU the build itself runs on; measured at about the same speed where both run (DESIGN §6).
PATHS = ("default", "no_repack")
PROBE_TIMEOUT_S = 600
# Part of the cache key: 2 added the batched decode (older verdicts did not cover its kernels).
PROBE_VERSION = 2
# Fault injection for the tests: a child probing this path kills itself with SIGILL, as the broken
# AMX kernels do. Never set it for real use.
FAULT_ENV = "FACTORY_LLAMACPP_PROBE_FAULT"
_construct_lock = threading.Lock()


@dataclass(frozen=True)
class ProbeResult:
    """The path to load models with, and what happened to the paths before it."""

    path: str
    failures: dict[str, str]
    cached: bool

    def describe(self) -> dict[str, Any]:
        return {"cpu_path": self.path, **({"cpu_path_failures": self.failures} if self.failures else {})}


@contextlib.contextmanager
def model_params_for(path: str) -> Iterator[None]:
    """While the block constructs a `Llama`, give it the model parameters of `path`.

    `Llama.__init__` takes `llama_model_default_params()` and loads the model at once, with no
    argument for use_extra_bufts, so the default-params function is wrapped for the duration.
    """
    if path == "default":
        yield
        return
    if path != "no_repack":
        raise ValueError(f"unknown llama.cpp path {path!r}; known: {PATHS}")
    import llama_cpp.llama_cpp as low

    with _construct_lock:
        original = low.llama_model_default_params

        def without_repacking():  # noqa: ANN202 - a ctypes struct
            params = original()
            params.use_extra_bufts = False
            return params

        low.llama_model_default_params = without_repacking
        try:
            yield
        finally:
            low.llama_model_default_params = original


def llama_cpp_version() -> str:
    try:
        return metadata.version("llama_cpp_python")
    except metadata.PackageNotFoundError:
        return "unknown"


def cpu_signature() -> str:
    """The CPU's model name and feature flags (what decides which kernels llama.cpp runs), hashed."""
    text = platform.machine()
    with contextlib.suppress(OSError):
        info = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        keep = [line for line in info.splitlines() if line.split(":")[0].strip() in ("model name", "flags", "Features")]
        text += "\n" + "\n".join(sorted(set(keep)))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _cache_file() -> Path:
    from factory.generators.catalog import cache_dir

    return cache_dir() / "llamacpp-probe.json"


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _describe_exit(code: int, stderr: str) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by signal {-code} ({signal.Signals(-code).name})"
        return f"killed by signal {-code}"
    last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
    return f"exit {code}" + (f": {last[:200]}" if last else "")


def _run_child(model_path: Path, path: str, n_threads: int) -> tuple[int, str]:
    cmd = [sys.executable, "-m", "factory.generators.llamacpp_probe", str(model_path), path, str(n_threads)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return 124, f"no answer within {PROBE_TIMEOUT_S} s"
    return done.returncode, done.stderr


def choose_path(model_path: Path, model_sha256: str, *, n_threads: int = 1) -> ProbeResult:
    """The first of `PATHS` on which llama.cpp loads this model and decodes, from the cache or a probe.

    Raises GenerationError, naming each path and how it died, when none works.
    """
    key = f"{llama_cpp_version()}/{cpu_signature()}/{model_sha256}/{PROBE_VERSION}"
    if FAULT_ENV in os.environ:
        key += f"/fault={os.environ[FAULT_ENV]}"
    cache = _cache_file()
    known = _read_cache(cache).get(key)
    if isinstance(known, dict) and known.get("path") in PATHS:
        return ProbeResult(known["path"], dict(known.get("failures", {})), cached=True)
    failures: dict[str, str] = {}
    for path in PATHS:
        started = time.perf_counter()
        code, stderr = _run_child(model_path, path, n_threads)
        if code == -signal.SIGINT:  # Ctrl+C reached the child too: an interruption, not a verdict on the path
            raise KeyboardInterrupt
        if code == 0:
            log.info("llama.cpp runs on this CPU with the %s path (probe %.1f s)", path, time.perf_counter() - started)
            _remember(cache, key, {"path": path, "failures": failures,
                                   "probed": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
            return ProbeResult(path, failures, cached=False)
        failures[path] = _describe_exit(code, stderr)
        log.warning("llama.cpp's %s path failed on this CPU (%s); trying the next", path, failures[path])
    tried = "; ".join(f"{p}: {why}" for p, why in failures.items())
    raise GenerationError(
        f"llama.cpp cannot run {model_path.name} on this CPU ({tried}). Rebuild llama-cpp-python for a plain "
        "x86-64 target, e.g. CMAKE_ARGS=\"-DGGML_NATIVE=OFF\" pip install --force-reinstall --no-cache-dir "
        "llama-cpp-python, or use another backend (openai, transformers)"
    )


def _remember(cache: Path, key: str, value: dict[str, Any]) -> None:
    """Add one answer to the cache file, written atomically (another build may read it meanwhile)."""
    from factory.run.store import atomic_write_text

    data = _read_cache(cache)
    data[key] = value
    with contextlib.suppress(OSError):  # a read-only cache only costs a probe next time
        atomic_write_text(cache, json.dumps(data, indent=1, sort_keys=True) + "\n")


def _child(model_path: str, path: str, n_threads: int) -> int:
    """Load the model on `path` and decode a few tokens, one sequence and then several at once (the
    batched engine's many-row kernels are other code than the one-row ones); a bad CPU path kills
    this process."""
    if os.environ.get(FAULT_ENV) in (path, "all"):
        os.kill(os.getpid(), signal.SIGILL)
    import llama_cpp

    from factory.generators.llamacpp_batch import BatchEngine, BatchRequest, SamplingSettings

    with model_params_for(path):
        llm = llama_cpp.Llama(model_path=model_path, n_ctx=256, n_threads=n_threads, seed=0, verbose=False)
    llm.create_completion("The sky is", max_tokens=2, temperature=0.0)
    engine = BatchEngine(llm.model, n_parallel=8, n_ctx_per_seq=64, n_threads=n_threads,
                         sampling=SamplingSettings(temperature=0.0, top_p=1.0))
    tokens = llm.tokenize(b"The sky is blue and the grass is")
    engine.run([BatchRequest(tokens=tokens, prefix_len=0, seed=i, max_tokens=2) for i in range(8)], lambda *_: None)
    engine.close()
    return 0


if __name__ == "__main__":  # pragma: no cover - run as the probe's child process
    sys.exit(_child(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 1))
