"""More of `factory build`: instruction recipes, Ctrl+C, real data in prompts, and the local default."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import weakref
from pathlib import Path

import pandas as pd
import pytest
from conftest import CANARY_KEY, cached_requests, classification_recipe, resent, scripted, write_recipe

from factory import build, interrupts, load_recipe
from factory.builder.builder import Builder
from factory.cli import main
from factory.data.real import load_real_rows, real_split, split_real
from factory.filters.params import QualityParams
from factory.tasks import make_recipe


def test_instruction_recipe_builds_pairs(tmp_path: Path, loopback, canary_key: str) -> None:
    server = loopback()
    base = classification_recipe(server.base_url)
    recipe = {
        "name": "pairs", "task": "instruction", "seed": 4, "description": "Product descriptions.",
        "axes": {"category": ["toys", "audio"]},
        "examples": [{"instruction": "Describe the X1 speaker.", "response": "Loud and clear."}],
        "generate": {"count": 6}, "generators": base["generators"],
    }
    result = build(load_recipe(write_recipe(tmp_path / "r.yaml", recipe)), tmp_path / "run", progress=False)
    table = pd.read_parquet(tmp_path / "run" / "dataset" / "data" / "train.parquet")
    assert len(table) == 6 and {"instruction", "response", "axis_category"} <= set(table.columns)
    assert [s.stage for s in result.manifest.funnel] == ["parse", "exact_dedup", "novelty", "target"]


def test_ctrl_c_saves_work_and_resumes(tmp_path: Path, loopback) -> None:
    server = loopback(delay=0.05)
    path = write_recipe(tmp_path / "r.yaml", classification_recipe(server.base_url, generate={"per_label": 40}))
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "factory", "build", str(path), "--out", str(out), "--no-progress"]
    env = {**os.environ, "FACTORY_TEST_KEY": CANARY_KEY}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while len(server.completed()) < 20 and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    # 130, or killed by SIGINT, which a shell reports as 130 too: in some interrupted states CPython
    # re-raises the signal as it exits.
    assert proc.returncode in (130, -signal.SIGINT), err
    assert "run the same command again to resume" in err
    finished, sent = cached_requests(out), len(server.log)
    assert len(finished) >= 15
    assert subprocess.run(cmd, env=env, capture_output=True).returncode == 0
    assert resent(server, sent, finished) == []
    table = pd.read_parquet(out / "dataset" / "data" / "train.parquet")
    assert table["label"].value_counts().to_dict() == {"positive": 40, "negative": 40}


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the swallowed interrupt, on purpose
def test_ctrl_c_that_python_swallows_still_stops_the_build(tmp_path: Path, loopback, canary_key: str) -> None:
    # Python drops a KeyboardInterrupt raised inside a weakref callback (garbage collected during an
    # import, say): the build used to finish and exit 0. Pressed during the last filter pass here.
    server = loopback()
    spec = load_recipe(write_recipe(tmp_path / "r.yaml", classification_recipe(server.base_url, generate={"per_label": 4})))

    class CtrlCInACallback(Builder):
        async def _filter(self, store, records):  # fault injection around the real chain
            if len(records) >= 8:  # the last pass: every row is generated
                garbage = type("Garbage", (), {})()
                weakref.finalize(garbage, os.kill, os.getpid(), signal.SIGINT)
                del garbage  # the callback runs now, and the KeyboardInterrupt it raises is ignored
            return await super()._filter(store, records)

    with interrupts.catch_ctrl_c(), pytest.raises(KeyboardInterrupt):
        CtrlCInACallback(spec, tmp_path / "run", progress=False).run()
    assert len(cached_requests(tmp_path / "run")) == len(server.completed()) >= 8, "finished work is saved"
    assert not (tmp_path / "run" / "dataset").exists(), "the build stopped before writing the dataset"


def real_csv(tmp_path: Path) -> Path:
    rows = [(f"positive real review number {i} praising the kettle", "pos") for i in range(12)]
    rows += [(f"negative real review number {i} about a broken lamp", "neg") for i in range(12)]
    path = tmp_path / "real.csv"
    pd.DataFrame(rows, columns=["review", "verdict"]).to_csv(path, index=False)
    return path


def test_few_shot_comes_from_real_train_rows_never_validation(tmp_path: Path, loopback, canary_key: str) -> None:
    server = loopback()
    real = real_csv(tmp_path)
    recipe = classification_recipe(server.base_url, generate={"per_label": 10, "few_shot": 3})
    recipe["real_data"] = {"path": real.name, "columns": {"text": "review", "label": "verdict"},
                           "label_map": {"pos": "positive", "neg": "negative"}, "train_per_label": 4}
    spec = load_recipe(write_recipe(tmp_path / "r.yaml", recipe))
    split = split_real(load_real_rows(spec), 4, spec.seed)
    assert len(split.train) == 8 and len(split.validation) == 16
    build(spec, tmp_path / "run", progress=False)
    prompts = " ".join(r.body["messages"][-1]["content"] for r in server.log)
    assert any(row.text in prompts for row in split.train)
    assert not any(row.text in prompts for row in split.validation)


def test_match_real_length_asks_each_text_for_a_length_of_its_labels_real_rows(tmp_path: Path, loopback, canary_key: str) -> None:
    server = loopback()
    rows = [(" ".join(["good"] * n), "positive") for n in (3, 4, 5, 6)] + [(" ".join(["bad"] * n), "negative") for n in (20, 30, 40, 50)]
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(tmp_path / "real.csv", index=False)
    recipe = classification_recipe(server.base_url, generate={"per_label": 8, "match_real_length": True})
    recipe |= {"axes": {"product": ["kettle", "lamp", "chair"]}, "real_data": {"path": "real.csv", "train_per_label": 2}}
    spec = load_recipe(write_recipe(tmp_path / "r.yaml", recipe))
    train = split_real(load_real_rows(spec), 2, spec.seed).train
    lengths = {label: {len(r.text.split()) for r in train if r.label == label} for label in ("positive", "negative")}
    build(spec, tmp_path / "run", progress=False)
    asked: dict[str, set[int]] = {"positive": set(), "negative": set()}
    for request in server.log:
        prompt = request.body["messages"][-1]["content"]
        label = "positive" if 'label is "positive"' in prompt else "negative"
        asked[label].add(int(prompt.split("length: about ")[1].split(" words")[0]))
    assert asked == lengths, "every length asked for is one of the label's real training rows, and each is used"

    # Without the option each prompt is the same, less its length: no other random choice moved.
    plain = load_recipe(write_recipe(tmp_path / "r.yaml", {**recipe, "generate": {**recipe["generate"], "match_real_length": False}}))
    with_length, without = make_recipe(spec, train), make_recipe(plain, train)
    for label, index in [("positive", 0), ("negative", 5)]:
        asking = with_length.prompt(label, index).messages[-1]["content"]
        assert re.sub(r"; length: about \d+ words", "", asking) == without.prompt(label, index).messages[-1]["content"]


def test_real_split_is_deterministic_and_disjoint(tmp_path: Path) -> None:
    recipe = classification_recipe("http://127.0.0.1:9/v1")
    recipe["real_data"] = {"path": real_csv(tmp_path).name, "columns": {"text": "review", "label": "verdict"},
                           "label_map": {"pos": "positive", "neg": "negative"}}
    spec = load_recipe(write_recipe(tmp_path / "r.yaml", recipe))
    rows = load_real_rows(spec)
    a, b = split_real(rows, 3, 1), split_real(list(reversed(rows)), 3, 1)
    assert [r.id for r in a.train] == [r.id for r in b.train]
    assert {r.text for r in a.train}.isdisjoint({r.text for r in a.validation})
    assert [r.id for r in split_real(rows, 3, 2).train] != [r.id for r in a.train]


def test_pinned_real_data_seed_keeps_the_split_when_the_recipe_seed_changes(tmp_path: Path) -> None:
    recipe = classification_recipe("http://127.0.0.1:9/v1")
    recipe["real_data"] = {"path": real_csv(tmp_path).name, "columns": {"text": "review", "label": "verdict"},
                           "label_map": {"pos": "positive", "neg": "negative"}, "train_per_label": 3,
                           "validation_rows": 6, "max_rows": 20}

    def split(seed: int, pinned: int | None) -> tuple[list[str], list[str]]:
        data = {**recipe, "seed": seed, "real_data": {**recipe["real_data"], "seed": pinned}}
        real = real_split(load_recipe(write_recipe(tmp_path / "r.yaml", data)))
        return [r.id for r in real.train], [r.id for r in real.validation]

    assert split(1, 5) == split(2, 5) == split(5, None), "a pinned seed picks the rows the recipe seed would have"
    assert split(1, None) != split(2, None), "unpinned, the recipe seed moves the split (as it always did)"


@pytest.mark.parametrize(
    ("real_data", "message"),
    [
        ({"path": "missing.csv"}, "does not exist"),
        ({"path": "real.csv", "columns": {"text": "body", "label": "verdict"}}, "column 'body' not found"),
        ({"path": "real.csv", "columns": {"text": "review", "label": "verdict"}}, "labels not in the recipe: 'neg'"),
    ],
)
def test_bad_real_data_fails_before_any_request(tmp_path: Path, loopback, canary_key: str, capsys, real_data, message) -> None:
    server = loopback()
    real_csv(tmp_path)
    recipe = classification_recipe(server.base_url)
    recipe["real_data"] = real_data
    path = write_recipe(tmp_path / "r.yaml", recipe)
    assert main(["build", str(path), "--out", str(tmp_path / "run"), "--no-progress"]) == 1
    assert message in capsys.readouterr().err
    assert server.log == []


def test_models_command_lists_the_catalog(capsys) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "smollm2-135m-instruct" in out and "qwen2.5-coder-1.5b-instruct" in out


@pytest.mark.slow
def test_build_with_in_process_llamacpp(tmp_path: Path) -> None:
    """The embedded local backend through the whole build, with the packaged SmolLM2."""
    recipe = classification_recipe("unused", generate={"per_label": 2, "max_requests": 16})
    recipe["generators"] = [{"name": "smol", "backend": "llamacpp", "model": "smollm2-135m-instruct",
                             "max_tokens": 80, "temperature": 0.7}]
    out = tmp_path / "run"
    assert main(["build", str(write_recipe(tmp_path / "r.yaml", recipe)), "--out", str(out), "--no-progress"]) in (0, 3)
    manifest = json.loads((out / "manifest.json").read_text())
    gen = manifest["generators"][0]
    assert gen["requests"] >= 4 and gen["completion_tokens"] > 0 and gen["models_reported"]
    assert manifest["funnel"][0]["kept"] >= 1, manifest["funnel"]
    rerun = build(load_recipe(tmp_path / "r.yaml"), out, progress=False)
    assert rerun.manifest.generators[0]["cached"] == rerun.manifest.generators[0]["requests"]


def test_builder_takes_its_generators_filters_and_embedder_from_the_caller(tmp_path: Path, loopback, canary_key: str) -> None:
    """Nothing is read or fitted in __init__; what the caller passes in is what runs."""
    from factory.embeddings import Embedder
    from factory.filters.exact import ExactDedup, ExactDedupParams
    from factory.generators.openai_compat import OpenAIGenerator

    server = loopback()
    spec = load_recipe(write_recipe(tmp_path / "r.yaml", classification_recipe(server.base_url, generate={"per_label": 3})))
    spec.filters = [ExactDedupParams(), QualityParams()]  # the recipe's chain, which the caller replaces
    embedder = Embedder(cache=tmp_path / "shared-embeddings.sqlite")
    generator = OpenAIGenerator(spec.generators[0])
    builder = Builder(spec, tmp_path / "run", progress=False, generators={"loop": generator},
                      filters=[ExactDedup(ExactDedupParams())], embedder=embedder)
    assert not (tmp_path / "run").exists() and not hasattr(builder, "filters")
    result = builder.run()
    assert [s.stage for s in result.manifest.funnel] == ["parse", "exact_dedup", "target"]
    assert builder.context.embedder is embedder and builder.generators["loop"] is generator
    assert result.complete and result.manifest.rows == 6


def test_the_labels_fill_together(tmp_path: Path, loopback, canary_key: str) -> None:
    """A round's prompts are sent in turns across labels, so a build stopped half-way is not one-sided."""
    server = loopback(script=scripted)
    recipe = classification_recipe(server.base_url, generate={"per_label": 6})
    recipe["generators"][0]["concurrency"] = 1  # one at a time, as the local model answers them
    assert main(["build", str(write_recipe(tmp_path / "r.yaml", recipe)), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    labels = [re.search(r'"label": "([^"]+)"', r.body["messages"][-1]["content"]).group(1) for r in server.log]
    first_half = labels[: len(labels) // 2]
    assert abs(first_half.count("positive") - first_half.count("negative")) <= 1, labels
