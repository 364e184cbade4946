"""--engine ray, filters and embeddings: exact and near dedup as distributed group-bys, per-row stages
as map_batches, and a whole build whose filter passes run on Ray Data, all deciding as in process."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from conftest import classification_recipe, write_recipe

from factory.cli import main
from factory.embeddings import Embedder
from factory.engines.ray_engine import RayEngine
from factory.filters import build_filter
from factory.filters.base import Filter, FilterContext
from factory.filters.params import ExactDedupParams, NearDedupParams, QualityParams
from factory.records import Record
from factory.run.manifest import load_manifest
from factory.spec import EngineSpec

pytest.importorskip("ray")

WORDS = "the kettle lamp chair boils water quickly handle stays cool bright light sturdy wobbly cheap broke".split()


def planted_rows(n: int = 3000, seed: int = 0) -> list[Record]:
    """Rows with planted exact copies, one-word edits, rows without text and rows of punctuation only."""
    rng = random.Random(seed)
    originals = [" ".join(rng.choices(WORDS, k=14)) for _ in range(n // 2)]
    texts = []
    for _ in range(n):
        text = rng.choice(originals)
        if rng.random() < 0.5:
            text = text.replace(rng.choice(WORDS), "zeta", 1)
        texts.append(text.upper() if rng.random() < 0.1 else text)
    texts[5], texts[7] = "", "!!"
    return [Record({"text": t}, label=("a", "b")[k % 2], id=f"r{k}") for k, t in enumerate(texts)]


def decisions(stage: Filter, rows: list[Record]) -> tuple:
    result = stage.fit(FilterContext(seed=3, labels=("a", "b"))).apply(rows)
    return [r.id for r in result.kept], [(r.id, r.reason, r.detail, r.meta) for r in result.dropped], result.stats


@pytest.mark.parametrize("params", [
    NearDedupParams(type="near_dedup"),
    NearDedupParams(type="near_dedup", unit="word", ngram=2, per_label=True, threshold=0.7),
    ExactDedupParams(type="exact_dedup"),
    ExactDedupParams(type="exact_dedup", per_label=True),
], ids=["near-char", "near-word-per-label", "exact", "exact-per-label"])
def test_dedup_on_ray_data_decides_as_in_process(ray_cluster, params) -> None:
    rows = planted_rows()
    engine = RayEngine(EngineSpec(name="ray", min_rows=0))
    on_ray = engine.stage(build_filter(params))
    assert type(on_ray).__name__.startswith("Ray"), "the distributed implementation was chosen"
    local = decisions(build_filter(params), rows)
    assert local[1], "the planted copies are found"
    assert decisions(on_ray, rows) == local, "same kept rows, same drops with the same details, same stats"
    assert engine.describe()["steps"][params.type]["rows"] == len(rows), "it ran on Ray Data"


def test_a_rowwise_stage_runs_in_blocks_and_keeps_row_order(ray_cluster) -> None:
    texts = ["Sure! Here is an example review: great kettle", "ok", "The lamp is bright and easy to carry around.",
             "[Customer Name] loved it very much indeed today", "As an AI language model I cannot write that."]
    rows = [Record({"text": texts[k % 5]}, label="a", id=f"r{k}") for k in range(500)]
    engine = RayEngine(EngineSpec(name="ray", min_rows=0))
    assert decisions(engine.stage(build_filter(QualityParams(type="quality"))), rows) == \
        decisions(build_filter(QualityParams(type="quality")), rows)
    assert engine.describe()["steps"]["quality"]["calls"] == 1


def test_small_inputs_stay_in_process(ray_cluster) -> None:
    engine = RayEngine(EngineSpec(name="ray", min_rows=10_000))
    decisions(engine.stage(build_filter(NearDedupParams(type="near_dedup"))), planted_rows(200))
    assert engine.describe()["steps"] == {}, "under min_rows nothing goes to Ray Data"


def test_embeddings_on_an_actor_pool_match_the_process(ray_cluster) -> None:
    texts = [f"The {w} number {k} works well." for k in range(150) for w in ("kettle", "lamp")]
    engine = RayEngine(EngineSpec(name="ray", min_rows=0, workers=2))
    on_ray = engine.embedder(None)
    on_ray.precision = "float32"  # bfloat16 kernels round differently with another thread count
    vectors = on_ray.encode(texts)
    assert np.abs(vectors - Embedder(precision="float32").encode(texts)).max() < 1e-5
    assert engine.describe()["steps"]["embeddings"]["rows"] == len(texts)
    assert on_ray.encode(texts[:10]).shape == (10, vectors.shape[1]) and engine.describe()["steps"]["embeddings"]["calls"] == 1, \
        "embedded texts come from the driver's memo"


def test_a_build_with_its_filters_on_ray_data_writes_the_local_dataset(ray_cluster, loopback, tmp_path: Path,
                                                                       canary_key, capsys) -> None:
    server = loopback()
    chain = [{"type": "exact_dedup"}, {"type": "quality", "min_words": 3}, {"type": "near_dedup", "threshold": 0.7},
             {"type": "leakage"}]
    runs = {}
    for engine in ("local", "ray"):
        recipe = classification_recipe(server.base_url, generate={"per_label": 10}, filters=chain,
                                       engine={"name": engine, "min_rows": 0})
        runs[engine] = tmp_path / engine
        assert main(["build", str(write_recipe(tmp_path / f"{engine}.yaml", recipe)), "--out", str(runs[engine]),
                     "--no-progress"]) == 0
    out = capsys.readouterr().out
    data = Path("dataset") / "data" / "train.parquet"
    assert (runs["local"] / data).read_bytes() == (runs["ray"] / data).read_bytes()
    local, on_ray = load_manifest(runs["local"]), load_manifest(runs["ray"])
    assert [s.model_dump() for s in local.funnel] == [s.model_dump() for s in on_ray.funnel]
    engine = on_ray.engine
    assert local.engine == {"name": "local"} and engine["name"] == "ray" and engine["cpus"] == 2
    assert {"exact_dedup", "quality", "near_dedup"} <= set(engine["steps"]) and engine["on_driver"] == ["leakage"]
    assert "ray data: near_dedup" in out and "in this process (they need every row at once): leakage" in out
