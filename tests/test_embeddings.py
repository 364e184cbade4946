"""The shared embedder: one model call per distinct text, in a run and across runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from factory.embeddings import Embedder


def test_memo_and_disk_cache(tmp_path: Path) -> None:
    cache = tmp_path / "embeddings.sqlite"
    first = Embedder(cache=cache)
    vectors = first.encode(["a fine film", "a dull film", "a fine film"])
    assert vectors.shape == (3, 384) and first.encoded == 2
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert first.encode(["a dull film"]).shape == (1, 384) and first.encoded == 2
    second = Embedder(cache=cache)
    again = second.encode(["a dull film", "a fine film", "something new"])
    assert second.encoded == 1  # only the new text reached the model
    assert np.array_equal(again[0], vectors[1]) and np.array_equal(again[1], vectors[0])
    assert Embedder().encode([]).shape == (0, 384)


def test_disk_cache_in_a_folder_that_does_not_exist_yet(tmp_path: Path) -> None:
    # A build's filters embed real rows while they fit, before the run directory is created.
    cache = tmp_path / "runs" / "fresh" / "embeddings.sqlite"
    Embedder(cache=cache).encode(["a fine film"])
    again = Embedder(cache=cache)
    again.encode(["a fine film"])
    assert again.encoded == 0


def test_bfloat16_vectors_match_float32_and_never_share_a_cache_entry(tmp_path: Path) -> None:
    texts = ["A sharp, funny and humane film.", "Two hours I will never get back.", "The plot is thin."]
    cache = tmp_path / "embeddings.sqlite"
    full = Embedder(cache=cache, precision="float32")
    half = Embedder(cache=cache, precision="bfloat16")
    assert (full.resolved_precision, half.resolved_precision) == ("float32", "bfloat16")
    a, b = full.encode(texts), half.encode(texts)
    assert half.encoded == 3, "a float32 vector in the cache is not reused as a bfloat16 one"
    assert b.dtype == np.float32 and np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    assert float((a * b).sum(axis=1).min()) > 0.999
    assert Embedder(precision="auto").resolved_precision in ("float32", "bfloat16")
