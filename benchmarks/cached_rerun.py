"""Cached re-run: building a finished recipe again must make 0 model calls.

Builds a 1,000-row recipe against the loopback OpenAI server (the baseline: a first, uncached build),
then builds it again and reports the time and how many requests reached the server.

    python benchmarks/cached_rerun.py [--rows 1000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from loopback_openai import LoopbackOpenAI  # noqa: E402

from factory import build  # noqa: E402
from factory.recipe_file import parse_recipe  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1000)
    args = parser.parse_args()
    with LoopbackOpenAI() as server, tempfile.TemporaryDirectory() as tmp:
        spec = parse_recipe({
            "name": "rerun", "task": "classification", "seed": 2,
            "labels": {"a": {"description": "first"}, "b": {"description": "second"}},
            "axes": {"topic": [f"t{i}" for i in range(40)], "tone": ["dry", "warm", "blunt"]},
            "generate": {"per_label": args.rows // 2, "few_shot": 0},
            "generators": [{"name": "loop", "backend": "openai", "model": "m", "base_url": server.base_url,
                            "api_key_env": None, "concurrency": 32}],
        })
        run = Path(tmp) / "run"
        start = time.perf_counter()
        first = build(spec, run, progress=False)
        first_s = time.perf_counter() - start
        sent = len(server.log)
        start = time.perf_counter()
        second = build(spec, run, progress=False)
        second_s = time.perf_counter() - start
        resent = len(server.log) - sent
    print(f"rows: {second.manifest.rows} (target {args.rows})")
    print(f"first build (baseline, {sent} requests): {first_s:.2f} s")
    print(f"cached re-run: {second_s:.2f} s, model calls: {resent}  "
          f"({second_s / first_s:.2f} x the first build)  "
          f"{'PASS' if resent == 0 and first.manifest.rows == second.manifest.rows else 'FAIL'}")


if __name__ == "__main__":
    main()
