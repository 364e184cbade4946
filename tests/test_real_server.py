"""The openai backend against a real OpenAI-compatible server: llama.cpp's, with SmolLM2, on loopback."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from conftest import classification_recipe, write_recipe

from factory import build, load_recipe
from factory.generators.catalog import resolve
from factory.generators.llamacpp_probe import choose_path

SMOL_NAME = "smollm2-135m-instruct"


# llama_cpp.server with the model loaded on the CPU path the factory's probe chose: the server has no
# setting for it, and its default path dies on CPUs that advertise AMX kernels they cannot run.
SERVE_ON_CPU_PATH = """
import sys
from llama_cpp.server.__main__ import main
from factory.generators.llamacpp_probe import model_params_for
with model_params_for(sys.argv.pop(1)):
    main()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    model = resolve(SMOL_NAME)
    cpu_path = choose_path(model.path, model.sha256).path
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    cmd = [sys.executable, "-c", SERVE_ON_CPU_PATH, cpu_path, "--model", str(model.path),
           "--model_alias", SMOL_NAME, "--host", "127.0.0.1", "--port", str(port),
           "--n_ctx", "2048", "--n_threads", "2"]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"{base}/models", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    pytest.fail(f"llama_cpp.server did not start:\n{log.read_text()[-2000:]}")
                time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.slow
def test_build_against_llama_cpp_server(tmp_path: Path, llama_server: str) -> None:
    recipe = classification_recipe(llama_server, generate={"per_label": 2, "max_requests": 30, "few_shot": 1})
    recipe["generators"][0] |= {"api_key_env": None, "model": "smollm2-135m-instruct", "timeout": 120,
                                "concurrency": 2, "max_tokens": 96, "temperature": 0.7}
    spec = load_recipe(write_recipe(tmp_path / "r.yaml", recipe))
    result = build(spec, tmp_path / "run", progress=False)

    gen = result.manifest.generators[0]
    assert gen["requests"] >= 4 and gen["failed"] == 0
    # The model name is the one the server reported.
    assert set(gen["models_reported"]) == {"smollm2-135m-instruct"}
    rows = [json.loads(line) for line in (tmp_path / "run" / "generated.jsonl").read_text().splitlines()]
    rejected = [json.loads(line) for line in (tmp_path / "run" / "rejected.jsonl").read_text().splitlines()]
    # The server refuses json_schema (422), so the client stepped down to json_object + schema, which
    # llama.cpp turns into a grammar: replies parse as JSON.
    assert not any(r["reason"] == "bad_json" for r in rejected)
    assert rows, f"no rows; rejected: {[r['reason'] for r in rejected]}"
    if result.complete:
        table = pd.read_parquet(tmp_path / "run" / "dataset" / "data" / "train.parquet")
        assert len(table) == 4
