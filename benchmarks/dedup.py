"""Dedup filters: throughput, recall and precision, with datasketch's MinHashLSH as the baseline.

Targets (100k rows, 2 cores): exact_dedup >= 150k rows/s; near_dedup >= 20k rows/s end to end
(folding, shingling, MinHash, LSH, verification, clustering, building the result), with recall
>= 0.95 and precision >= 0.99 on the planted near copies of `dedup_data.py`.

All three run on the same rows: originals, exact copies (case / punctuation / width variants),
near copies (1-3 word edits, about one per ten words) and paraphrases (not copies), shuffled.
Each original and its planted copies form a group; a paraphrase is a group of its own.

- recall (per kind of copy): of the rows that should go (all members of a planted group but one),
  the share that went while their group kept a row:
  sum_g [kept_g >= 1] (size_g - kept_g) / sum_g (size_g - 1), over the groups with copies of that kind;
- precision: correct drops / drops. A drop is correct if its planted group kept a row, or if its
  exact Jaccard (plain-Python shingle sets, the same shingles) with a kept row the method matched it
  to is >= the threshold: the generator makes a few near copies by chance, and dropping those is
  right. Dropping a paraphrase, or a row no kept row is that close to, is wrong.

near_dedup and the baseline both run on all rows (exact copies included: Jaccard 1). The baseline
is the usual datasketch dedup loop with default settings apart from the threshold: for each row in
order, a MinHash(num_perm=128) of the same shingles, `lsh.query()`, drop the row if anything comes
back (the candidates are its matches), else `lsh.insert()`; it has no verification step. If it
would take too long at the full size, `--baseline-rows` runs it on a prefix and the output says so.

    python benchmarks/dedup.py [--rows 100000] [--also-10k] [--repeat 3] [--baseline-rows N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence

import numpy as np
from dedup_data import DedupSet, make_dedup_set

from factory.filters.exact import ExactDedup, ExactDedupParams
from factory.filters.near_dedup import NearDedup, NearDedupParams
from factory.minhash import fold
from factory.records import Record

TARGET_EXACT, TARGET_NEAR, TARGET_RECALL, TARGET_PRECISION = 150_000, 20_000, 0.95, 0.99
Shingles = Callable[[str], set[str]]


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def shingle_fn(unit: str, ngram: int) -> Shingles:
    """Plain-Python shingles, the same as near_dedup's (the precision check and the baseline use them)."""

    def shingles(text: str) -> set[str]:
        folded = fold(text)
        units = list(folded) if unit == "char" else folded.split()
        joiner = "" if unit == "char" else " "
        if not units:
            return set()
        return {joiner.join(units[k:k + ngram]) for k in range(max(1, len(units) - ngram + 1))}

    return shingles


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def scores(data: DedupSet, kept: np.ndarray, matches: dict[int, list[int]], shingle: Shingles,
           threshold: float) -> dict[str, float]:
    """Recall per kind of planted copy, precision, and what the wrong drops were, over len(kept) rows.

    `matches[i]` lists the kept rows a dropped row i was matched to (its evidence).
    """
    n = len(kept)
    group, kind = np.asarray(data.group[:n]), np.asarray(data.kind[:n])
    size = np.bincount(group, minlength=len(data.rows))
    kept_in = np.bincount(group[kept], minlength=len(data.rows))
    copy_kind = np.full(len(data.rows), "", dtype=object)  # an original has copies of one kind only
    copies = (kind == "exact") | (kind == "near")
    copy_kind[group[copies]] = kind[copies]
    out: dict[str, float] = {}
    for which in ("exact", "near"):
        g = np.flatnonzero((copy_kind == which) & (size >= 2))
        should = (size[g] - 1).sum()
        went = np.where(kept_in[g] >= 1, size[g] - kept_in[g], 0).sum()
        out[f"recall_{which}"] = float(went / should) if should else float("nan")
    dropped = np.flatnonzero(~kept)
    planted_ok = kept_in[group[dropped]] >= 1
    by_chance = 0
    for i in dropped[~planted_ok].tolist():
        mine = shingle(data.rows[i].text)
        if any(jaccard(mine, shingle(data.rows[j].text)) >= threshold - 1e-12 for j in matches.get(i, [])):
            by_chance += 1
    correct = int(planted_ok.sum()) + by_chance
    out["dropped"] = len(dropped)
    out["precision"] = correct / max(1, len(dropped))
    out["chance_copies"] = by_chance
    out["wrong"] = len(dropped) - correct
    para = kind == "paraphrase"
    out["paraphrases_dropped"] = float((~kept[para]).sum() / max(1, para.sum()))
    return out


def timed(fn: Callable[[], object], repeat: int) -> tuple[object, float, list[float]]:
    """Result of the last call, median seconds, all timings."""
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return result, statistics.median(times), times


def outcome(records: Sequence[Record], result: object) -> tuple[np.ndarray, dict[int, list[int]]]:
    """Kept mask and, per dropped row, the kept row it was matched to (from near_dedup's meta)."""
    index = {r.id: i for i, r in enumerate(records)}
    kept = np.zeros(len(records), dtype=bool)
    kept[[index[r.id] for r in result.kept]] = True  # type: ignore[attr-defined]
    matches = {index[d.id]: [index[d.meta["near_duplicate_of"]]] for d in result.dropped  # type: ignore[attr-defined]
               if "near_duplicate_of" in d.meta}
    return kept, matches


def datasketch_dedup(records: Sequence[Record], threshold: float,
                     shingle: Shingles) -> tuple[np.ndarray, dict[int, list[int]]]:
    """The baseline loop: MinHash + MinHashLSH with default settings; a row with candidates is dropped."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=128)
    kept = np.zeros(len(records), dtype=bool)
    matches: dict[int, list[int]] = {}
    for i, record in enumerate(records):
        m = MinHash(num_perm=128)
        m.update_batch([s.encode("utf-8") for s in shingle(record.text)])
        found = lsh.query(m)
        if found:
            matches[i] = [int(k) for k in found]
        else:
            lsh.insert(str(i), m)
            kept[i] = True
    return kept, matches


def report(s: dict[str, float], *, targets: bool) -> None:
    def line(label: str, value: float, target: float) -> str:
        mark = f"  target >= {target}  {verdict(value >= target)}" if targets else ""
        return f"{'':14}{label:<19}{value:.4f}{mark}"

    print(line("recall near copies", s["recall_near"], TARGET_RECALL))
    print(line("precision", s["precision"], TARGET_PRECISION))
    print(f"{'':14}recall exact copies {s['recall_exact']:.4f}; dropped {s['dropped']:,}, of which "
          f"{s['chance_copies']:,} unplanted near copies and {s['wrong']:,} wrong; "
          f"paraphrases dropped {s['paraphrases_dropped']:.2%}")


def run(n: int, seed: int, repeat: int, baseline_rows: int | None, threshold: float) -> None:
    print(f"\n=== {n:,} rows (seed {seed}) ===")
    start = time.perf_counter()
    data = make_dedup_set(n, seed)
    kinds = {k: data.kind.count(k) for k in ("original", "exact", "near", "paraphrase")}
    print(f"data: {kinds} (built in {time.perf_counter() - start:.1f} s)")
    records = data.rows
    params = NearDedupParams(threshold=threshold)
    ngram = params.ngram
    shingle = shingle_fn(params.unit, ngram)

    exact = ExactDedup(ExactDedupParams())
    result, seconds, times = timed(lambda: exact.apply(records), repeat)
    rate = n / seconds
    kept, _ = outcome(records, result)
    s = scores(data, kept, {}, shingle, threshold)
    print(f"exact_dedup : {rate:>9,.0f} rows/s  (median of {[round(t, 3) for t in times]} s)  "
          f"target >= {TARGET_EXACT:,}  {verdict(rate >= TARGET_EXACT)}")
    print(f"{'':14}recall exact copies {s['recall_exact']:.4f}, precision {s['precision']:.4f}, "
          f"dropped {s['dropped']:,}")

    near = NearDedup(params)
    result, seconds, times = timed(lambda: near.apply(records), repeat)
    rate = n / seconds
    kept, matches = outcome(records, result)
    print(f"near_dedup  : {rate:>9,.0f} rows/s  (median of {[round(t, 3) for t in times]} s)  "
          f"target >= {TARGET_NEAR:,}  {verdict(rate >= TARGET_NEAR)}")
    print(f"{'':14}{params.unit} {ngram}-grams, threshold {threshold}, stats {result.stats}")  # type: ignore[attr-defined]
    report(scores(data, kept, matches, shingle, threshold), targets=True)

    m = min(n, baseline_rows) if baseline_rows else n
    subset = records[:m]
    start = time.perf_counter()
    kept, matches = datasketch_dedup(subset, threshold, shingle)
    seconds = time.perf_counter() - start
    note = "" if m == n else f"  (first {m:,} rows only: the full set takes too long)"
    print(f"datasketch  : {m / seconds:>9,.0f} rows/s  ({seconds:.1f} s; MinHashLSH(threshold={threshold}, "
          f"num_perm=128), same shingles){note}  baseline")
    report(scores(data, kept, matches, shingle, threshold), targets=False)
    if m != n:
        kept, matches = outcome(subset, NearDedup(params).apply(subset))
        s = scores(data, kept, matches, shingle, threshold)
        print(f"{'':14}near_dedup on the same {m:,} rows: recall near copies {s['recall_near']:.4f}, "
              f"precision {s['precision']:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--also-10k", action="store_true", help="run at 10,000 rows first")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per filter (the median counts)")
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--baseline-rows", type=int, default=None, help="run datasketch on this many rows only")
    args = parser.parse_args()
    for n in ([10_000] if args.also_10k else []) + [args.rows]:
        run(n, args.seed, args.repeat, args.baseline_rows, args.threshold)


if __name__ == "__main__":
    main()
