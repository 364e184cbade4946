"""Ray against one process: generation requests/s, and near-dedup rows/s on planted rows.

Requests: a loopback OpenAI server (its own process) answers every request after a fixed latency. The same
classification recipe is built with `--engine local` and with `--engine ray` on 1, 2 and 4 actors
(each actor gets concurrency / workers requests in flight), each into a fresh run directory; we
report generation requests/s (requests / the manifest's generation seconds) and check that every
build wrote the same dataset. One machine only: Ray's gain here is spreading the client work over
processes; on a real cluster the actors sit on other nodes (more cores, more GPUs for in-process
models), and completions travel back through Ray's object store and the network to the driver.

Dedup: `--dedup-rows` rows (default 1M) of 12-20 words, a third of them planted near copies (one word
changed) or exact copies of another row; near_dedup (char 3-grams, Jaccard 0.8) in this process and on
Ray Data (`factory/engines/ray_dedup.py`), rows/s each, and whether both dropped the same rows with the
same details. On one machine Ray adds shuffles, serialisation and task start-up to the same numpy work;
its gain is more cores and memory on more nodes, which this machine cannot show.

    python benchmarks/ray_scaling.py [--rows 400] [--latency 0.05] [--concurrency 32] [--dedup-rows 1000000]
                                     [--skip-requests] [--skip-dedup]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import ray

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _loopback import loopback_server  # noqa: E402

from factory import build  # noqa: E402
from factory.engines.ray_engine import RayEngine  # noqa: E402
from factory.filters.near_dedup import NearDedup  # noqa: E402
from factory.filters.params import NearDedupParams  # noqa: E402
from factory.recipe_file import parse_recipe
from factory.records import Record  # noqa: E402
from factory.spec import EngineSpec  # noqa: E402


def recipe(base_url: str, per_label: int, concurrency: int) -> dict:
    return {"name": "scaling", "task": "classification", "seed": 1, "description": "A one-sentence product review.",
            "labels": {"positive": {"description": "Likes it.", "examples": ["Great."]},
                       "negative": {"description": "Dislikes it.", "examples": ["Awful."]}},
            "generate": {"per_label": per_label, "batch_size": 64},
            "filters": [{"type": "exact_dedup"}],
            "generators": [{"name": "loop", "backend": "openai", "model": "m", "base_url": base_url,
                            "api_key_env": "SCALING_KEY", "concurrency": concurrency, "timeout": 30}]}


def planted_rows(n: int, seed: int = 0) -> list[Record]:
    """n rows of 12-20 words from a 5,000-word vocabulary; a third copy an earlier row, half of those with one word changed."""
    rng = np.random.default_rng(seed)
    vocabulary = np.array([f"w{k}" for k in range(5000)])
    lengths = rng.integers(12, 21, n)
    texts = [" ".join(vocabulary[rng.integers(0, 5000, m)]) for m in lengths.tolist()]
    copies = rng.choice(np.arange(1, n), n // 3, replace=False)
    for row in copies.tolist():
        words = texts[int(rng.integers(0, row))].split()
        if rng.random() < 0.5:
            words[int(rng.integers(0, len(words)))] = str(vocabulary[int(rng.integers(0, 5000))])
        texts[row] = " ".join(words)
    return [Record({"text": t}, id=f"r{k}") for k, t in enumerate(texts)]


def dedup(rows: int) -> None:
    records = planted_rows(rows)
    params = NearDedupParams(type="near_dedup")
    results = {}
    for engine in ("local", "ray"):
        stage = NearDedup(params) if engine == "local" else RayEngine(EngineSpec(name="ray", min_rows=0)).stage(NearDedup(params))
        started = time.perf_counter()
        result = stage.apply(records)
        seconds = time.perf_counter() - started
        results[engine] = ([r.id for r in result.kept], [(r.id, r.detail) for r in result.dropped])
        print(json.dumps({"near_dedup": engine, "rows": rows, "dropped": len(result.dropped), "seconds": round(seconds, 1),
                          "rows_per_s": round(rows / seconds), "stats": result.stats}), flush=True)
    print(json.dumps({"same_decisions": results["local"] == results["ray"]}))


def requests(args: argparse.Namespace) -> None:
    datasets = set()
    with loopback_server(args.latency) as url, tempfile.TemporaryDirectory() as work:
        for engine, workers in (("local", 0), ("ray", 1), ("ray", 2), ("ray", 4)):
            data = recipe(url, args.rows // 2, args.concurrency)
            data["engine"] = {"name": engine, "workers": max(1, workers)}
            run = Path(work) / f"{engine}-{workers}"
            manifest = build(parse_recipe(data), run, progress=False).manifest
            generator = manifest.generators[0]
            sent = generator["requests"] - generator["cached"]
            datasets.add((run / "dataset" / "data" / "train.parquet").read_bytes())
            print(json.dumps({"engine": engine, "workers": workers or None, "total_concurrency": args.concurrency,
                              "latency_s": args.latency, "requests": sent,
                              "generation_s": manifest.timings.generation_s,
                              "requests_per_s": round(sent / manifest.timings.generation_s, 1),
                              "per_worker": [w["requests"] for w in generator.get("worker_stats", [])]}), flush=True)
    print(json.dumps({"identical_datasets": len(datasets) == 1}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=400)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--dedup-rows", type=int, default=1_000_000)
    parser.add_argument("--skip-requests", action="store_true")
    parser.add_argument("--skip-dedup", action="store_true")
    args = parser.parse_args()
    os.environ["SCALING_KEY"] = "loopback-not-a-secret"  # before ray.init: the workers inherit this environment
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    if not args.skip_requests:
        requests(args)
    if not args.skip_dedup:
        dedup(args.dedup_rows)
    ray.shutdown()


if __name__ == "__main__":
    main()
