"""Sentence embeddings: the packaged all-MiniLM-L6-v2 through `factory.embeddings.Embedder`.

Target: >= 250 sentences/s on 2 cores for ~2,000 benchmark texts (the short review / critic /
support rows of `dedup_data.py`, all distinct), and a second `encode()` of the same texts embeds 0
new texts (the per-text memo). The baseline, measured in the same run on the same texts, is
`SentenceTransformer(path).encode(texts)` with default settings. Model loading is excluded from
both timings (each model first encodes two other texts); each timing is the best of `--repeat`
runs (a fresh Embedder per run, or its memo would answer).

Each line also gives sentences per CPU-second (all threads). On a machine shared with other jobs
the wall-clock rate says little; for the one-thread variants the CPU-second rate is close to what
an idle core does (with more threads than free cores, waiting threads spin and inflate CPU time).

`--variants` also times what could speed the Embedder up, each through an Embedder: one torch
thread instead of one per core (helps when other processes compete for the cores), other batch
sizes, and the other precision than the one `precision="auto"` picked here (bfloat16 on CPUs with
AVX512-BF16 or AMX, float32 elsewhere), with the smallest cosine between the two precisions' vectors.

    python benchmarks/embeddings.py [--texts 2000] [--repeat 2] [--variants]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

from dedup_data import make_dedup_set

from factory.embeddings import Embedder, packaged_minilm_path

TARGET = 250
WARM = ["A warm-up sentence.", "Another one, to load the weights."]


def distinct_texts(n: int, seed: int) -> list[str]:
    seen: dict[str, None] = {}
    for row in make_dedup_set(2 * n, seed).rows:
        seen.setdefault(row.text, None)
    return list(seen)[:n]


class Timing:
    """Best wall-clock and CPU seconds over runs (CPU seconds count every thread)."""

    def __init__(self) -> None:
        self.wall, self.cpu = float("inf"), float("inf")

    def run(self, fn: Callable[[], object]) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        self.wall = min(self.wall, time.perf_counter() - wall)
        self.cpu = min(self.cpu, time.process_time() - cpu)

    def describe(self, n: int) -> str:
        return f"{n / self.wall:7.1f} sentences/s ({n / self.cpu:5.0f} per CPU-second)"


def embedder_timing(texts: list[str], repeat: int, make: Callable[[], Embedder]) -> tuple[Timing, Embedder]:
    """Timing of `make().encode(texts)`, a fresh (warmed-up) Embedder per run."""
    timing, embedder = Timing(), make()
    for _ in range(repeat):
        embedder = make()
        embedder.encode(WARM)
        timing.run(lambda e=embedder: e.encode(texts))
    return timing, embedder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--variants", action="store_true", help="also time threads, batch sizes and bfloat16")
    args = parser.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer

    texts = distinct_texts(args.texts, args.seed)
    words = sum(len(t.split()) for t in texts) / len(texts)
    print(f"{len(texts):,} distinct texts, {words:.1f} words on average; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")

    n = len(texts)
    model = SentenceTransformer(packaged_minilm_path(), device="cpu")
    model.encode(WARM)
    base = Timing()
    for _ in range(args.repeat):
        base.run(lambda: model.encode(texts))
    print(f"baseline  SentenceTransformer.encode (defaults, batch_size=32): {base.describe(n)}")

    ours, embedder = embedder_timing(texts, args.repeat, Embedder)
    rate = n / ours.wall
    print(f"factory   Embedder.encode (batch_size={embedder.batch_size}, {embedder.resolved_precision}):  {ours.describe(n)}  "
          f"{base.wall / ours.wall:.2f} x baseline; target >= {TARGET}  {'PASS' if rate >= TARGET else 'FAIL'}")
    before = embedder.encoded
    start = time.perf_counter()
    again = embedder.encode(texts)
    seconds = time.perf_counter() - start
    new = embedder.encoded - before
    print(f"memo      second encode() of the same {n:,} texts: {new} new texts embedded, "
          f"{seconds * 1000:.1f} ms, shape {again.shape}  {'PASS' if new == 0 else 'FAIL'}")
    if not args.variants:
        return

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    timing, _ = embedder_timing(texts, args.repeat, Embedder)
    torch.set_num_threads(threads)
    print(f"variant   torch.set_num_threads(1):                        {timing.describe(n)}")
    for size in (32, 128, 256):
        timing, _ = embedder_timing(texts, args.repeat, lambda size=size: Embedder(batch_size=size))
        print(f"variant   batch_size={size:<4}                                 {timing.describe(n)}")

    other = "float32" if embedder.resolved_precision == "bfloat16" else "bfloat16"
    timing, flipped = embedder_timing(texts, args.repeat, lambda: Embedder(precision=other))
    cosine = float((flipped.encode(texts) * again).sum(axis=1).min())
    print(f"variant   precision={other:<9}                              {timing.describe(n)}  "
          f"smallest cosine to {embedder.resolved_precision}: {cosine:.4f}")

if __name__ == "__main__":
    main()
