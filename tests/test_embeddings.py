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
