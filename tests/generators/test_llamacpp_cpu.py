"""llama.cpp on an unknown CPU: the probe that finds a path that runs, and Ctrl+C during a decode.

The probe's children run the packaged SmolLM2 for real. The fault that some virtual CPUs cause
(signal 4 in the AMX kernels) is injected with FACTORY_LLAMACPP_PROBE_FAULT, which makes the child
probing that path kill itself with SIGILL exactly as the faulting kernel does.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from factory.errors import GenerationError
from factory.generators.catalog import resolve
from factory.generators.llamacpp import LlamaCppGenerator
from factory.generators.llamacpp_probe import FAULT_ENV, choose_path
from factory.generators.params import LlamaCppParams
from factory.records import Prompt

pytestmark = pytest.mark.slow
SMOL = "smollm2-135m-instruct"


@pytest.fixture()
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh probe cache (the model itself is read from its package, wherever the cache is)."""
    monkeypatch.setenv("FACTORY_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_probe_picks_a_surviving_path_here_and_caches_it(cache_dir: Path, monkeypatch) -> None:
    # Which path survives depends on the CPU (llama.cpp's repacked kernels fault on some machines):
    # the default when it runs, else no_repack with the default's failure recorded.
    monkeypatch.delenv(FAULT_ENV, raising=False)
    model = resolve(SMOL)
    first = choose_path(model.path, model.sha256)
    assert first.path in ("default", "no_repack") and not first.cached
    if first.path == "default":
        assert first.failures == {}
    else:
        assert set(first.failures) == {"default"}
    again = choose_path(model.path, model.sha256)
    assert (again.path, again.cached) == (first.path, True)
    assert json.loads((cache_dir / "models" / "llamacpp-probe.json").read_text())


def test_a_path_that_dies_with_sigill_falls_back_and_the_model_still_generates(cache_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv(FAULT_ENV, "default")
    gen = LlamaCppGenerator(LlamaCppParams(backend="llamacpp", name="smol", model=SMOL, max_tokens=24, n_ctx=512))
    gen.load()
    try:
        described = gen.describe()
        assert described["cpu_path"] == "no_repack"
        assert "SIGILL" in described["cpu_path_failures"]["default"]
        reply = gen.complete(Prompt(bucket="all", index=0, generator="smol", seed=1, schema=None,
                                    messages=[{"role": "user", "content": "Name a colour."}]))
        assert reply.error is None and reply.text.strip()
    finally:
        gen.close()


def test_when_every_path_dies_the_error_names_each(cache_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv(FAULT_ENV, "all")
    model = resolve(SMOL)
    with pytest.raises(GenerationError) as raised:
        choose_path(model.path, model.sha256)
    message = str(raised.value)
    assert "default: killed by signal 4 (SIGILL)" in message and "no_repack: killed by signal 4 (SIGILL)" in message
    assert "GGML_NATIVE=OFF" in message


def _recipe(tmp_path: Path, per_label: int, parallel: int = 1) -> Path:
    recipe = {
        "name": "smol", "task": "classification", "seed": 1,
        "description": "Write one short movie review.",
        "labels": {"good": {"description": "The critic liked the film."},
                   "bad": {"description": "The critic disliked the film."}},
        "generate": {"per_label": per_label, "few_shot": 0, "batch_size": 1},
        "generators": [{"backend": "llamacpp", "model": SMOL, "max_tokens": 64, "n_ctx": 1024, "parallel": parallel}],
    }
    path = tmp_path / "smol.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return path


def _finished(out: Path) -> int:
    try:
        with sqlite3.connect(out / "requests.sqlite", timeout=0.1) as db:
            return db.execute("SELECT COUNT(*) FROM requests").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_manifest_records_the_cpu_path(tmp_path: Path, cache_dir: Path, monkeypatch) -> None:
    monkeypatch.delenv(FAULT_ENV, raising=False)
    from factory import build, load_recipe

    result = build(load_recipe(_recipe(tmp_path, 2)), tmp_path / "run", progress=False)
    model = resolve(SMOL)
    assert result.manifest.generators[0]["cpu_path"] == choose_path(model.path, model.sha256).path


# Moments after the first finished request: at once, mid-decode, and later ones; one request at a
# time, and four decoded together. One case of each then resumes (a whole build: slow).
@pytest.mark.parametrize(("parallel", "delay", "resume"), [
    (1, 0.0, False), (1, 0.15, False), (1, 0.4, True), (1, 0.9, False), (1, 1.7, False),
    (4, 0.0, False), (4, 0.5, True),
])
def test_ctrl_c_during_llama_cpp_generation_exits_130(tmp_path: Path, cache_dir: Path, parallel: int,
                                                      delay: float, resume: bool) -> None:
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "factory", "build", str(_recipe(tmp_path, 30, parallel)), "--out", str(out), "--no-progress"]
    env = {k: v for k, v in os.environ.items() if k != FAULT_ENV}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while _finished(out) < 1 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the build ended before it could be interrupted"
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, f"exit {proc.returncode}: {err[-2000:]}"
    assert "run the same command again to resume" in err

    # The run directory is whole: every line parses, no id twice, the finished requests are cached.
    ids = [json.loads(line)["id"] for line in (out / "generated.jsonl").read_text().splitlines()]
    assert len(ids) == len(set(ids))
    finished = _finished(out)
    assert finished >= 1
    if not resume:
        return
    # The re-run answers every finished request from the cache: none is sent twice.
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    stats = json.loads((out / "manifest.json").read_text())["generators"][0]
    assert stats["cached"] == finished and stats["requests"] > finished
