"""The judge on the packaged default model: planted wrong and off-topic responses score lower than good ones."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pandas as pd
import pytest
from conftest import classification_recipe, write_recipe
from loopback_openai import Action

from factory.cli import main
from factory.run.manifest import load_manifest

GOOD = [("What is the capital of France?", "The capital of France is Paris."),
        ("How many legs does a spider have?", "A spider has eight legs."),
        ("Write a Python expression for the length of a list named items.", "len(items)")]
BAD = [("What is the capital of Japan?", "The capital of Japan is Beijing."),  # wrong
       ("How many days are in a week?", "A week has ten days."),  # wrong
       ("Name a primary colour.", "Bake the bread at 200 degrees for forty minutes.")]  # off-topic


def test_the_packaged_qwen_judge_ranks_planted_bad_pairs_lower(loopback, tmp_path: Path, canary_key) -> None:
    pytest.importorskip("llama_cpp")
    pairs = iter(GOOD + BAD)
    lock = threading.Lock()

    def writer(body: dict, n: int) -> Action:  # the loopback server writes the planted pairs, one per prompt
        with lock:
            instruction, response = next(pairs)
        return Action(text=json.dumps({"instruction": instruction, "response": response}))

    server = loopback(script=writer)
    writer_params = {**classification_recipe(server.base_url)["generators"][0], "concurrency": 1}
    recipe = {"name": "judged", "task": "instruction", "seed": 1, "description": "General questions.",
              "examples": [{"instruction": "What is 2 + 2?", "response": "4"}],
              "generate": {"count": 6, "max_requests": 6},
              # a verdict on four criteria takes about 300 tokens: more than the default max_tokens; a judge
              # decodes greedily (at 0.9 one batched run sampled 5 for every pair, good and bad)
              "generators": [writer_params, {"name": "qwen", "backend": "llamacpp", "weight": 0, "max_tokens": 512,
                                             "temperature": 0}],
              # threshold 1: keep every row, so every score is a column to compare
              "filters": [{"type": "judge", "generator": "qwen", "threshold": 1}]}
    run = tmp_path / "run"
    assert main(["build", str(write_recipe(tmp_path / "r.yaml", recipe)), "--out", str(run), "--no-progress"]) == 0
    table = pd.read_parquet(run / "dataset" / "data" / "train.parquet").set_index("instruction")
    good = table.loc[[q for q, _ in GOOD], "judge_score"]
    bad = table.loc[[q for q, _ in BAD], "judge_score"]
    assert good.mean() > bad.mean(), (good.to_dict(), bad.to_dict(), table["judge_rationale"].to_dict())
    judge = {s.stage: s for s in load_manifest(run).funnel}["judge"]
    assert judge.stats["requests"]["requests"] == 6 and judge.stats["judged"] == {"passed": 6}
    qwen = {g["name"]: g for g in load_manifest(run).generators}["qwen"]
    assert qwen["model"] == "qwen2.5-coder-1.5b-instruct" and qwen["requests"] == 6
