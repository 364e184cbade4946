"""Requests/s of a build on Ray actors against the local async engine, at the same total concurrency.

A loopback OpenAI server (its own process) answers every request after a fixed latency. The same
classification recipe is built with `--engine local` and with `--engine ray` on 1, 2 and 4 actors
(each actor gets concurrency / workers requests in flight), each into a fresh run directory; we
report generation requests/s (requests / the manifest's generation seconds) and check that every
build wrote the same dataset. One machine only: Ray's gain here is spreading the client work over
processes; on a real cluster the actors sit on other nodes (more cores, more GPUs for in-process
models), and completions travel back through Ray's object store and the network to the driver.

    python benchmarks/ray_scaling.py [--rows 400] [--latency 0.05] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import ray

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _loopback import loopback_server  # noqa: E402

from factory import build  # noqa: E402
from factory.spec import parse_recipe  # noqa: E402


def recipe(base_url: str, per_label: int, concurrency: int) -> dict:
    return {"name": "scaling", "task": "classification", "seed": 1, "description": "A one-sentence product review.",
            "labels": {"positive": {"description": "Likes it.", "examples": ["Great."]},
                       "negative": {"description": "Dislikes it.", "examples": ["Awful."]}},
            "generate": {"per_label": per_label, "batch_size": 64},
            "filters": [{"type": "exact_dedup"}],
            "generators": [{"name": "loop", "backend": "openai", "model": "m", "base_url": base_url,
                            "api_key_env": "SCALING_KEY", "concurrency": concurrency, "timeout": 30}]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=400)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    os.environ["SCALING_KEY"] = "loopback-not-a-secret"
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
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
    ray.shutdown()


if __name__ == "__main__":
    main()
