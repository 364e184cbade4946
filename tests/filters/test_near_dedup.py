"""near_dedup: what it keeps and drops and why, determinism, per-label mode and edge cases."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest
from pydantic import ValidationError

from factory.filters.near_dedup import NearDedup, NearDedupParams
from factory.minhash import _minhash, _shingles, fold, fold_many, optimal_bands
from factory.records import Record
from factory.text import normalize, normalize_many

KETTLE = "The kettle boils water quickly and the handle stays cool to the touch."


def rows(*texts: str, label: str | None = "a") -> list[Record]:
    return [Record({"text": t}, label, id=f"r{i}") for i, t in enumerate(texts)]


def shingles(text: str, unit: str = "char", n: int = 3) -> set[str]:
    """The filter's shingles, written the slow obvious way."""
    folded = fold(text)
    units = list(folded) if unit == "char" else folded.split()
    joiner = "" if unit == "char" else " "
    return {joiner.join(units[k:k + n]) for k in range(max(1, len(units) - n + 1))} if units else set()


def jaccard(a: str, b: str, unit: str = "char", n: int = 3) -> float:
    x, y = shingles(a, unit, n), shingles(b, unit, n)
    return len(x & y) / len(x | y)


def dedup(records: list[Record], **params: object):
    return NearDedup(NearDedupParams(**params)).apply(records)


def test_drops_near_copies_and_names_the_kept_row() -> None:
    records = rows(
        KETTLE,
        "The kettle boils water very quickly and the handle stays cool to the touch.",  # one word added
        "A sharp, funny and humane film about two brothers running a failing bakery.",
        "Water boils fast in this kettle, and its handle never gets hot.",  # paraphrase: kept
        "THE KETTLE BOILS WATER QUICKLY, AND THE HANDLE STAYS COOL TO THE TOUCH!!!",  # case / punctuation
    )
    result = dedup(records)
    assert [r.id for r in result.kept] == ["r0", "r2", "r3"]
    assert [(d.id, d.stage, d.reason) for d in result.dropped] == [
        ("r1", "near_dedup", "near_duplicate"), ("r4", "near_dedup", "near_duplicate")]
    expected = jaccard(records[0].text, records[1].text)
    assert 0.8 <= expected < 1
    assert result.dropped[0].detail == f"near duplicate of r0 (Jaccard {expected:.2f} on char 3-grams)"
    assert result.dropped[1].detail == "near duplicate of r0 (Jaccard 1.00 on char 3-grams)"
    assert result.dropped[0].meta["near_duplicate_of"] == "r0"
    assert result.funnel("near_dedup", 5)["dropped"] == {"near_duplicate": 2}
    assert result.stats["confirmed_pairs"] == 3 and result.stats["clusters"] == 1  # r0-r1, r0-r4, r1-r4


def test_threshold_is_inclusive_exact_jaccard() -> None:
    other = "The kettle boils water slowly and the handle stays cool to the touch."
    similarity = jaccard(KETTLE, other)
    assert len(dedup(rows(KETTLE, other), threshold=similarity).kept) == 1
    assert len(dedup(rows(KETTLE, other), threshold=min(1.0, similarity + 0.01)).kept) == 2


def test_first_row_in_input_order_wins_and_kept_keeps_order() -> None:
    copy = "The kettle boils water very quickly and the handle stays cool to the touch."
    records = rows("Unrelated first row about trains.", copy, "Another unrelated row on gardening.", KETTLE)
    result = dedup(records)
    assert [r.id for r in result.kept] == ["r0", "r1", "r2"]
    assert result.dropped[0].id == "r3" and "near duplicate of r1" in result.dropped[0].detail


def test_chain_joins_one_cluster_and_says_through_which_row() -> None:
    base = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]
    b = base.copy()
    b[2] = "kilo"
    c = b.copy()
    c[7] = "lima"
    records = rows(" ".join(base), " ".join(b), " ".join(c))
    assert jaccard(records[0].text, records[1].text, "word", 1) == pytest.approx(9 / 11)
    assert jaccard(records[0].text, records[2].text, "word", 1) == pytest.approx(8 / 12)
    result = dedup(records, unit="word", ngram=1)
    assert [r.id for r in result.kept] == ["r0"]
    assert result.dropped[0].detail == "near duplicate of r0 (Jaccard 0.82 on word 1-grams)"
    assert result.dropped[1].detail == (
        "near duplicate of r1 (Jaccard 0.82 on word 1-grams), in the cluster kept as r0 (Jaccard 0.67)")
    assert {d.meta["near_duplicate_of"] for d in result.dropped} == {"r0"}


def test_per_label() -> None:
    records = rows(KETTLE, label="positive") + [
        Record({"text": KETTLE.upper()}, "negative", id="n0"),
        Record({"text": KETTLE + " Really."}, "negative", id="n1"),
        Record({"text": "A lone row with no label at all, about trains."}, id="x0"),
    ]
    assert [r.id for r in dedup(records).kept] == ["r0", "x0"]
    result = dedup(records, per_label=True)
    assert [r.id for r in result.kept] == ["r0", "n0", "x0"]
    assert result.dropped[0].id == "n1" and "near duplicate of n0" in result.dropped[0].detail
    # Unlabelled rows form a group of their own: a copy across None and a label is kept.
    mixed = [Record({"text": KETTLE}, id="u"), Record({"text": KETTLE}, "a", id="l")]
    assert len(dedup(mixed, per_label=True).kept) == 2


def test_deterministic_for_a_seed_across_instances_and_processes() -> None:
    rng = random.Random(3)
    vocab = [f"w{i}" for i in range(300)]
    base = [" ".join(rng.choices(vocab, k=15)) for _ in range(60)]
    texts = base + [t.replace(t.split()[4], "zz", 1) for t in base[:30]]
    rng.shuffle(texts)
    first, second = dedup(rows(*texts), seed=5), dedup(rows(*texts), seed=5)
    assert [r.id for r in first.kept] == [r.id for r in second.kept]
    assert [(d.id, d.detail) for d in first.dropped] == [(d.id, d.detail) for d in second.dropped]
    hashes, counts = _shingles(texts, "char", 3)
    here = _minhash(hashes, counts, 64, seed=5)
    assert not np.array_equal(here, _minhash(hashes, counts, 64, seed=6))
    # Another interpreter with another str-hash salt computes the same signatures.
    code = (
        "import json, sys; from factory.minhash import _minhash, _shingles;"
        "texts = json.load(sys.stdin); h, c = _shingles(texts, 'char', 3);"
        "print(json.dumps(_minhash(h, c, 64, seed=5).tolist()))"
    )
    out = subprocess.run([sys.executable, "-c", code], input=json.dumps(texts), capture_output=True, text=True,
                         check=True, env={"PYTHONHASHSEED": "12345", **_env()})
    assert np.array_equal(np.array(json.loads(out.stdout), dtype=np.uint32), here)


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTHONHASHSEED"}


def test_minhash_agreement_estimates_jaccard_for_large_and_tiny_sets() -> None:
    rng = np.random.default_rng(0)
    for size, shared in ((400, 300), (10, 5)):
        estimates, truths = [], []
        for _ in range(100):
            pool = rng.choice(2**32 - 1, size=2 * size - shared, replace=False).astype(np.uint32)
            a, b = np.sort(pool[:size]), np.sort(pool[size - shared:])
            sig = _minhash(np.concatenate((a, b)), np.array([size, size]), 256, seed=1)
            estimates.append((sig[0] == sig[1]).mean())
            truths.append(shared / (2 * size - shared))
        assert np.mean(estimates) == pytest.approx(np.mean(truths), abs=0.03)


def test_edge_cases_empty_single_identical() -> None:
    empty = dedup([])
    assert empty.kept == [] and empty.dropped == [] and empty.funnel("near_dedup", 0)["kept"] == 0
    assert [r.id for r in dedup(rows(KETTLE)).kept] == ["r0"]
    same = dedup(rows(*[KETTLE] * 300))
    assert [r.id for r in same.kept] == ["r0"]
    assert len(same.dropped) == 299
    assert {d.detail for d in same.dropped} == {"near duplicate of r0 (Jaccard 1.00 on char 3-grams)"}


def test_empty_and_short_texts() -> None:
    # No word characters: no shingles, never a near copy (exact_dedup and quality own those rows).
    # Shorter than the n-gram: the whole text is the one shingle.
    records = rows("", "!!!", "  ", "ok", "OK!", "no", "a", "ab")
    result = dedup(records)
    assert [r.id for r in result.kept] == ["r0", "r1", "r2", "r3", "r5", "r6", "r7"]
    assert [d.id for d in result.dropped] == ["r4"]
    assert result.stats["rows_without_shingles"] == 3
    word = dedup(rows("ok", "OK", "ok then"), unit="word", ngram=3)
    assert [r.id for r in word.kept] == ["r0", "r2"]


def test_unicode_and_emoji() -> None:
    records = rows(
        "Ｇｒｅａｔ film, I loved it 🙂",  # full-width letters fold under NFKC
        "great film i loved it 🙂",
        "🙂",  # emoji are text here, not punctuation: this row has a shingle
        "😡",
        "🙂!",
        "这部电影非常好看，我很喜欢这个故事",  # no spaces: character shingles still work
        "这部电影非常好看，我很喜欢这个故事！",
        "Straße café naïve",
        "STRASSE CAFÉ NAÏVE",  # casefold: ß -> ss
    )
    result = dedup(records)
    assert [r.id for r in result.kept] == ["r0", "r2", "r3", "r5", "r7"]
    assert {d.id: d.meta["near_duplicate_of"] for d in result.dropped} == {
        "r1": "r0", "r4": "r2", "r6": "r5", "r8": "r7"}
    assert fold("Great🙂!") == "great 🙂"
    assert [r.id for r in dedup(rows("great 🙂", "great 😡"), unit="word", ngram=1).kept] == ["r0", "r1"]


def test_fold_many_matches_fold_and_normalize_many_matches_normalize() -> None:
    rng = random.Random(7)
    alphabet = [chr(c) for c in range(128)] + list("ｆｕｌｌ ﬁ ß İ é 🙂😡 中文 \u00a0\u2003")
    texts = ["", "   ", "a\x00b", "Hello,  World!", "\tTabs\nand\r\nlines  ", "Great🙂!", "ＦＵＬＬ width"]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 40))) for _ in range(400)]
    for batch in (texts, [t for t in texts if t.isascii() and "\x00" not in t], texts[:1], []):
        assert fold_many(batch) == [fold(t) for t in batch]
        assert normalize_many(batch) == [normalize(t) for t in batch]


def test_very_long_text() -> None:
    rng = random.Random(0)
    long_text = " ".join(rng.choice(["alpha", "beta", "gamma", "delta", "omega", "kappa"]) + str(rng.randrange(999))
                         for _ in range(20_000))
    edited = long_text.replace(long_text.split()[100], "changed", 1)
    result = dedup(rows(long_text, edited, "short row"))
    assert [r.id for r in result.kept] == ["r0", "r2"]
    assert "Jaccard 1.00" in result.dropped[0].detail or "Jaccard 0.99" in result.dropped[0].detail


def test_recall_on_a_small_planted_set() -> None:
    rng = random.Random(1)
    vocab = [f"{a}{b}" for a in ("ka", "lo", "mi", "nu", "pe", "ri", "so", "tu") for b in ("x", "y", "z", "wa", "el")]
    originals = [[rng.choice(vocab) for _ in range(rng.randrange(20, 40))] for _ in range(300)]
    copies = []
    for words in originals[:150]:
        words = words.copy()
        for _ in range(max(1, len(words) // 15)):  # a word edit per 15 words
            words[rng.randrange(len(words))] = rng.choice(vocab)
        copies.append(words)
    texts = [" ".join(w) for w in originals + copies]
    result = dedup(rows(*texts))
    dropped = {int(d.id[1:]) for d in result.dropped}
    assert len(dropped & set(range(300, 450))) / 150 >= 0.95
    assert not dropped & set(range(150, 300))  # originals without copies stay


def test_include_response() -> None:
    records = [Record({"instruction": "Summarise the article.", "response": f"It is about {topic}."}, id=f"r{i}")
               for i, topic in enumerate(["trains", "the history of bread baking in France"])]
    assert len(dedup(records).kept) == 1
    assert len(dedup(records, include_response=True).kept) == 2


def test_params_validation_and_bands() -> None:
    assert optimal_bands(0.8, 128, 0.5, 0.5) == (9, 13)  # what datasketch's MinHashLSH picks
    assert NearDedupParams().resolved_bands() == (16, 8)  # misses weigh more: candidates are verified
    assert NearDedupParams(bands=32).resolved_bands() == (32, 4)
    assert NearDedupParams(rows=5, num_perm=64).resolved_bands() == (12, 5)
    with pytest.raises(ValidationError):
        NearDedupParams(bands=20, rows=8)
    with pytest.raises(ValidationError):
        NearDedupParams(threshold=0)
    with pytest.raises(ValidationError):
        NearDedupParams(unit="sentence")
    with pytest.raises(ValidationError):
        NearDedupParams(thresold=0.8)
    for name, field in NearDedupParams.model_fields.items():
        assert name == "type" or field.description, name
