"""MinHash + LSH near-duplicate search: rows whose shingle sets have Jaccard at or above a threshold.

Used by the near_dedup filter, the splits (near copies go to one split) and the Ray engine (the
same search on Ray Data). The steps, all vectorised with numpy over the whole batch:

1. shingles: character (default) or word n-grams of the folded text (`fold`), hashed with a
   stable 64-bit hash (splitmix64 of code points, polynomial over a word's and an n-gram's parts),
   never Python's salted `hash()`, so a seed gives the same result in every process;
2. a MinHash signature of `num_perm` values per row, computed by one-permutation hashing with
   optimal densification (Shrivastava, ICML 2017): one hash per shingle instead of `num_perm`, with
   the same collision probability as classic MinHash, Pr[equal value] = Jaccard;
3. LSH banding: rows that agree on every value of some band become candidate pairs;
4. every candidate pair is checked with the exact Jaccard of the two shingle sets (precision);
5. connected components of the confirmed pairs are clusters, each rooted at its earliest row.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from factory.graph import components
from factory.text import normalize, normalize_many

if TYPE_CHECKING:
    from factory.filters.params import NearDedupParams

# Emoji and pictographs count as text here ("great 🙂" and "great 😡" are not copies of each other);
# other punctuation does not.
_EMOJI = "\u2600-\u27bf\U0001f000-\U0001faff"
_EMOJI_RUN = re.compile(rf"[{_EMOJI}]")
_NOT_TEXT = re.compile(rf"[^\w\s{_EMOJI}]")

_U64 = np.uint64
_MUL = _U64(0x9E3779B97F4A7C15)  # polynomial base for combining token hashes into a shingle hash
_BASE = _U64(0x100000001B3)  # polynomial base over a word's code points (odd, so invertible)
_BASE_INV = _U64(pow(0x100000001B3, -1, 1 << 64))
_M1, _M2 = _U64(0xBF58476D1CE4E5B9), _U64(0x94D049BB133111EB)
_CHUNK_ROWS = 8192  # rows hashed at a time: bounds the temporaries, whatever the batch size
_PAIR_BLOCK = 1 << 18  # shingles compared at a time (cache-sized) when verifying candidate pairs
_FP_WEIGHT, _FN_WEIGHT = 0.05, 0.95  # verification removes false positives, so misses are what cost


@lru_cache(maxsize=64)
def optimal_bands(threshold: float, num_perm: int, fp_weight: float = _FP_WEIGHT,
                  fn_weight: float = _FN_WEIGHT) -> tuple[int, int]:
    """The (bands, rows) that minimise fp_weight * P(false positive) + fn_weight * P(false negative).

    As in datasketch's `_optimal_param`: the probability that a pair of similarity s becomes a
    candidate is 1 - (1 - s**r)**b, integrated below the threshold (false positives) and above it
    (false negatives), here with the trapezoidal rule on a fine grid.
    """
    def area(y: np.ndarray, x: np.ndarray) -> np.ndarray:  # trapezoidal rule along the last axis
        return ((y[..., 1:] + y[..., :-1]) * np.diff(x) / 2).sum(axis=-1)

    below, above = np.linspace(0.0, threshold, 1025), np.linspace(threshold, 1.0, 1025)
    best, best_error = (1, num_perm), float("inf")
    for b in range(1, num_perm + 1):
        r = np.arange(1, num_perm // b + 1, dtype=np.float64)[:, None]
        error = (fp_weight * area(1 - (1 - below**r) ** b, below)
                 + fn_weight * area((1 - above**r) ** b, above))
        k = int(np.argmin(error))
        if error[k] < best_error:
            best, best_error = (b, k + 1), float(error[k])
    return best


def fold_many(texts: Sequence[str]) -> list[str]:
    """`[fold(t) for t in texts]`, with the batch fast path of `normalize_many` for ASCII texts."""
    out = normalize_many(texts)  # right for ASCII texts, where fold and normalize agree
    for i, text in enumerate(texts):
        if not text.isascii():
            out[i] = fold(text)
    return out


def fold(text: str) -> str:
    """`factory.text.normalize`, except that emoji survive, each as a word of its own.

    NFKC, casefold, punctuation to spaces, single spaces: "Great🙂!" -> "great 🙂".
    """
    if text.isascii():
        return normalize(text)
    text = _NOT_TEXT.sub(" ", unicodedata.normalize("NFKC", text).casefold())
    return " ".join(_EMOJI_RUN.sub(r" \g<0> ", text).split())


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser, in place on a uint64 array: a stable, well-spread 64-bit hash."""
    x ^= x >> _U64(30)
    x *= _M1
    x ^= x >> _U64(27)
    x *= _M2
    x ^= x >> _U64(31)
    return x


def _seed_key(seed: int, purpose: int) -> np.uint64:
    digest = hashlib.blake2b(f"near_dedup:{seed}:{purpose}".encode(), digest_size=8).digest()
    return _U64(int.from_bytes(digest, "little"))


def _codepoints(norms: list[str]) -> np.ndarray:
    return np.frombuffer("".join(norms).encode("utf-32-le"), dtype="<u4").astype(np.uint64)


def _tokens(texts: Sequence[str], unit: str) -> tuple[np.ndarray, np.ndarray]:
    """(token hashes of all rows end to end, tokens per row). A token is a character or a word."""
    if unit == "char":
        norms = fold_many(texts)
        lengths = np.fromiter((len(s) for s in norms), dtype=np.int64, count=len(norms))
        return _mix(_codepoints(norms) + _U64(0x632BE59BD9B4E019)), lengths
    # Words: runs of non-spaces in the folded texts, each row followed by a space. A word's hash is
    # the polynomial sum(c_k * B**k) of its code points, read off prefix sums (times B**-start, as B
    # is odd and so invertible mod 2**64): no Python loop over tokens.
    norms = [folded + " " for folded in fold_many(texts)]
    points = _codepoints(norms)
    if not len(points):
        return np.zeros(0, dtype=np.uint64), np.zeros(len(texts), dtype=np.int64)
    word = points != _U64(32)
    begin = np.flatnonzero(word & ~np.concatenate(([False], word[:-1])))
    end = np.flatnonzero(word & ~np.concatenate((word[1:], [False]))) + 1
    powers = np.full(len(points), _BASE, dtype=np.uint64)
    powers[0] = 1
    np.cumprod(powers, out=powers)
    inverse = np.full(len(points), _BASE_INV, dtype=np.uint64)
    inverse[0] = 1
    np.cumprod(inverse, out=inverse)
    prefix = np.zeros(len(points) + 1, dtype=np.uint64)
    np.cumsum(points * powers, out=prefix[1:])
    hashes = _mix((prefix[end] - prefix[begin]) * inverse[begin])
    row_of_point = np.repeat(np.arange(len(texts), dtype=np.int64),
                             np.fromiter((len(s) for s in norms), dtype=np.int64, count=len(norms)))
    return hashes, np.bincount(row_of_point[begin], minlength=len(texts))


def _shingles(texts: Sequence[str], unit: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(hashes, counts): each row's sorted unique 32-bit shingle hashes, end to end, and counts per row.

    A shingle is n consecutive tokens of a row; a row with fewer tokens (but some) has its whole
    token sequence as its one shingle, and a row without tokens has no shingles.
    """
    tokens, lengths = _tokens(texts, unit)
    rows = len(texts)
    starts = np.cumsum(lengths) - lengths
    total = len(tokens)
    parts_h: list[np.ndarray] = []
    parts_d: list[np.ndarray] = []
    if total >= n:
        # Polynomial combination of n consecutive token hashes at every position, then keep the
        # positions whose n-gram lies inside one row.
        span = total - n + 1
        h = tokens[:span].copy()
        for k in range(1, n):
            h *= _MUL
            h += tokens[k:k + span]
        row_of = np.repeat(np.arange(rows, dtype=np.int64), lengths)[:span]
        valid = (np.arange(span, dtype=np.int64) - starts[row_of]) <= lengths[row_of] - n
        parts_h.append(h[valid])
        parts_d.append(row_of[valid])
    short = np.flatnonzero((lengths > 0) & (lengths < n))
    for m in np.unique(lengths[short]).tolist():
        docs = short[lengths[short] == m]
        h = tokens[starts[docs]].copy()
        for k in range(1, m):
            h *= _MUL
            h += tokens[starts[docs] + k]
        parts_h.append(h ^ _U64(0xA0761D6478BD642F * m % (1 << 64)))  # unlike any full n-gram
        parts_d.append(docs)
    if not parts_h:
        return np.zeros(0, dtype=np.uint32), np.zeros(rows, dtype=np.int64)
    h32 = _mix(np.concatenate(parts_h)) >> _U64(32)
    keys = np.sort((np.concatenate(parts_d).astype(np.uint64) << _U64(32)) | h32)
    keep = np.ones(len(keys), dtype=bool)
    keep[1:] = keys[1:] != keys[:-1]
    keys = keys[keep]
    counts = np.bincount((keys >> _U64(32)).astype(np.int64), minlength=rows)
    return (keys & _U64(0xFFFFFFFF)).astype(np.uint32), counts


@lru_cache(maxsize=16)
def _probe_table(num_perm: int, seed: int, attempts: int) -> np.ndarray:
    """(num_perm, attempts) bins an empty bin probes, in order: a function of (seed, bin, attempt) only."""
    probe = (np.arange(num_perm, dtype=np.uint64)[:, None] * _U64(0x100000001B3)
             + np.arange(1, attempts + 1, dtype=np.uint64)[None, :])
    return (((_mix(probe ^ _seed_key(seed, 2)) >> _U64(32)) * _U64(num_perm)) >> _U64(32)).astype(np.int64)


def _minhash(hashes: np.ndarray, counts: np.ndarray, num_perm: int, seed: int) -> np.ndarray:
    """(rows, num_perm) uint32 signatures by one-permutation hashing with optimal densification.

    Each shingle is hashed once; its high bits pick a bin, its low bits are the value, and each bin
    keeps its minimum. An empty bin borrows the value of the first non-empty bin in a probe sequence
    that depends only on (seed, bin, attempt), so two rows agree on a bin with probability equal to
    their Jaccard similarity, as with num_perm independent permutations (Shrivastava, ICML 2017).
    Rows without shingles keep an all-ones signature; the caller leaves them out of LSH.
    """
    rows = len(counts)
    x = _mix(hashes.astype(np.uint64) ^ _seed_key(seed, 1))
    bins = (((x >> _U64(32)) * _U64(num_perm)) >> _U64(32)).astype(np.int64)
    flat = np.repeat(np.arange(rows, dtype=np.int64) * num_perm, counts) + bins
    sig = np.full(rows * num_perm, np.iinfo(np.uint32).max, dtype=np.uint32)
    np.minimum.at(sig, flat, (x & _U64(0xFFFFFFFF)).astype(np.uint32))
    filled = np.zeros(rows * num_perm, dtype=bool)
    filled[flat] = True
    empty = np.flatnonzero(~filled & np.repeat(counts > 0, num_perm))
    if len(empty):
        attempts = 4 * num_perm
        table = _probe_table(num_perm, seed, attempts)
        target = empty % num_perm
        base = empty - target
        source = np.zeros(len(empty), dtype=np.int64)
        pending, bins_left, base_left = np.arange(len(empty)), target, base
        for attempt in range(attempts):
            probe = base_left + table[bins_left, attempt]
            hit = filled[probe]
            source[pending[hit]] = probe[hit]
            miss = ~hit
            pending, bins_left, base_left = pending[miss], bins_left[miss], base_left[miss]
            if not len(pending):
                break
        # Left only in rows with one or two filled bins: the first filled bin after the empty one
        # (a rule that, like the probes, depends only on which bins are filled).
        for k in pending.tolist():
            order = base[k] + (target[k] + np.arange(1, num_perm + 1)) % num_perm
            source[k] = order[np.argmax(filled[order])]
        sig[empty] = sig[source]
    return sig.reshape(rows, num_perm)


def band_keys(sig: np.ndarray, groups: np.ndarray, bands: int, rows: int, seed: int) -> np.ndarray:
    """(len(sig), bands) uint64: a hash of each band's values, salted with the row's group and the band.

    Rows with the same key in some band are LSH candidates; a row's keys depend on that row alone, so
    any process computes them for any slice of the rows."""
    salt = _mix(groups.astype(np.uint64) ^ _seed_key(seed, 3))
    keys = np.empty((len(sig), bands), dtype=np.uint64)
    for band in range(bands):
        key = salt + _U64(band * int(_MUL) % (1 << 64))
        for col in sig[:, band * rows:(band + 1) * rows].T:
            key = _mix(key ^ col.astype(np.uint64))
        keys[:, band] = key
    return keys


def bucket_pairs(key: np.ndarray, members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Candidate pairs (left < right) among `members` (ascending row numbers) that share a `key`.

    Within a bucket every member is paired with the bucket's first member and with its predecessor:
    linear in the bucket size (all-identical inputs stay cheap), and a near-copy pair is missed only
    if every band that holds it also holds an unrelated row between them.
    """
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    same = sorted_key[1:] == sorted_key[:-1]
    if not same.any():
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    members = members[order]
    starts = np.flatnonzero(np.concatenate(([True], ~same)))
    first = members[starts[np.cumsum(np.concatenate(([True], ~same))) - 1]]
    right = members[1:][same]
    to_first = first[1:][same] != members[:-1][same]
    return (np.concatenate((members[:-1][same], first[1:][same][to_first])),
            np.concatenate((right, right[to_first])))


def _band_pairs(sig: np.ndarray, active: np.ndarray, groups: np.ndarray, bands: int, rows: int,
                seed: int) -> np.ndarray:
    """Unique candidate pairs (i < j) as int64 codes i * n + j, from rows sharing a band's values."""
    n = len(sig)
    idx = np.flatnonzero(active)
    if len(idx) < 2:
        return np.zeros(0, dtype=np.int64)
    keys = band_keys(sig[idx], groups[idx], bands, rows, seed)
    codes = [left * n + right for left, right in (bucket_pairs(keys[:, band], idx) for band in range(bands))]
    return np.unique(np.concatenate(codes))


def _likely(sig: np.ndarray, counts: np.ndarray, a: np.ndarray, b: np.ndarray,
            threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """The pairs worth an exact check: MinHash estimate within four standard deviations of the threshold.

    Candidates from LSH include many pairs well below the threshold (texts that share a template);
    the signature agreement estimates their Jaccard almost for free. The margin is four standard
    deviations at the largest binomial variance, 1/4, counting as samples only the bins the smaller
    set fills itself (k shingles fill num_perm * (1 - exp(-k / num_perm)) bins on average; the rest
    are borrowed copies), so a true pair is skipped with probability well under 1e-4.
    """
    keep = np.zeros(len(a), dtype=bool)
    step = max(1, (1 << 22) // sig.shape[1])
    for start in range(0, len(a), step):
        pa, pb = a[start:start + step], b[start:start + step]
        estimate = (sig[pa] == sig[pb]).mean(axis=1)
        k = np.minimum(counts[pa], counts[pb])
        filled = sig.shape[1] * -np.expm1(-k / sig.shape[1])  # expected non-empty bins of the smaller set
        keep[start:start + step] = estimate >= threshold - 2.0 / np.sqrt(np.maximum(filled, 1.0))
    return a[keep], b[keep]


def _jaccard(hashes: np.ndarray, starts: np.ndarray, counts: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact Jaccard of the shingle sets of rows a[k] and b[k], for every k (vectorised, in blocks).

    Each side's sets are laid end to end with the pair's index in the high 32 bits, which keeps
    both arrays sorted; the intersection is then a binary search of one in the other.
    """
    out = np.zeros(len(a), dtype=np.float64)
    ends = np.cumsum(counts[a] + counts[b])
    start = 0
    while start < len(a):
        done = ends[start - 1] if start else 0
        stop = max(start + 1, int(np.searchsorted(ends, done + _PAIR_BLOCK, side="right")))
        pa, pb = a[start:stop], b[start:stop]
        keys = []
        for rows in (pa, pb):
            lengths = counts[rows]
            tag = np.repeat(np.arange(len(rows), dtype=np.uint64), lengths)
            # Position of each element: its row's start, plus its rank within the row's run.
            first = np.repeat(starts[rows] - (np.cumsum(lengths) - lengths), lengths)
            keys.append((tag << _U64(32)) | hashes[first + np.arange(len(tag))].astype(np.uint64))
        key_a, key_b = keys
        inter = np.zeros(len(pa), dtype=np.int64)
        if len(key_a) and len(key_b):
            pos = np.minimum(np.searchsorted(key_a, key_b), len(key_a) - 1)
            found = key_a[pos] == key_b
            inter = np.bincount((key_b[found] >> _U64(32)).astype(np.int64), minlength=len(pa))
        union = counts[pa] + counts[pb] - inter
        out[start:stop] = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
        start = stop
    return out


@dataclass(slots=True)
class Shingled:
    """The shingle sets of some rows, row after row (`starts`, `counts`), and their MinHash signatures."""

    hashes: np.ndarray
    starts: np.ndarray
    counts: np.ndarray
    sig: np.ndarray

    @classmethod
    def of(cls, texts: Sequence[str], p: NearDedupParams) -> Shingled:
        hash_parts, count_parts, sig_parts = [], [], []
        for start in range(0, len(texts), _CHUNK_ROWS):
            hashes, counts = _shingles(texts[start:start + _CHUNK_ROWS], p.unit, p.ngram)
            hash_parts.append(hashes)
            count_parts.append(counts)
            sig_parts.append(_minhash(hashes, counts, p.num_perm, p.seed))
        if not hash_parts:
            return cls(np.zeros(0, np.uint32), np.zeros(0, np.int64), np.zeros(0, np.int64),
                       np.zeros((0, p.num_perm), np.uint32))
        counts = np.concatenate(count_parts)
        return cls(np.concatenate(hash_parts), np.cumsum(counts) - counts, counts, np.concatenate(sig_parts))

    def jaccard(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Exact Jaccard of rows a[k] and b[k]."""
        return _jaccard(self.hashes, self.starts, self.counts, a, b)

    def confirm(self, a: np.ndarray, b: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The candidate pairs whose exact Jaccard reaches `threshold`, with it (cheap bounds first)."""
        counts = self.counts
        # Pairs whose sizes alone rule the threshold out skip the exact check: J <= small / large.
        small, large = np.minimum(counts[a], counts[b]), np.maximum(counts[a], counts[b])
        possible = small >= threshold * large - 1e-9
        a, b = _likely(self.sig, counts, a[possible], b[possible], threshold)
        similarity = self.jaccard(a, b)
        close = similarity >= threshold - 1e-12
        return a[close], b[close], similarity[close]


@dataclass(slots=True)
class NearDuplicates:
    """Confirmed near-duplicate pairs (a, b, their exact Jaccard) and each row's cluster root (its earliest row).

    `jaccard(a, b)` gives the exact Jaccard of any other pairs of the same rows."""

    root: np.ndarray
    a: np.ndarray
    b: np.ndarray
    similarity: np.ndarray
    candidates: int
    rows_without_shingles: int
    jaccard: Callable[[np.ndarray, np.ndarray], np.ndarray]


def near_duplicates(texts: Sequence[str], p: NearDedupParams, groups: np.ndarray | None = None) -> NearDuplicates:
    """The clusters of `texts` whose shingle sets have Jaccard >= p.threshold (within the same `groups` value).

    MinHash + LSH proposes candidate pairs; each is confirmed with the exact Jaccard; confirmed pairs
    are joined into connected components."""
    n = len(texts)
    bands, rows = p.resolved_bands()
    shingled = Shingled.of(texts, p)
    codes = _band_pairs(shingled.sig, shingled.counts > 0, np.zeros(n, dtype=np.int64) if groups is None else groups,
                        bands, rows, p.seed)
    a, b, similarity = shingled.confirm(codes // n, codes % n, p.threshold)
    return NearDuplicates(components(n, a, b), a, b, similarity, len(codes), int((shingled.counts == 0).sum()),
                          shingled.jaccard)
