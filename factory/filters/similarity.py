"""Block-wise cosine similarity shared by the semantic filters.

Every product is at most BLOCK x BLOCK, so memory stays linear in the number of rows.
"""

from __future__ import annotations

import numpy as np

# Rows per side of one similarity product: 1024 × 1024 float32 is 4 MiB, big enough for fast BLAS.
BLOCK = 1024


def best_match(queries: np.ndarray, reference: np.ndarray, block: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """For each query row, the highest cosine with any reference row and that row's index.

    Both inputs are unit vectors. Rows with no reference get (-inf, -1). Never holds more than
    block × block similarities at once.
    """
    block = block or BLOCK
    best = np.full(len(queries), -np.inf, dtype=np.float32)
    arg = np.full(len(queries), -1, dtype=np.int64)
    for q in range(0, len(queries), block):
        rows = slice(q, q + block)
        for r in range(0, len(reference), block):
            sims = queries[rows] @ reference[r : r + block].T
            top = sims.argmax(axis=1)
            value = sims[np.arange(len(top)), top]
            better = value > best[rows]
            best[rows][better] = value[better]
            arg[rows][better] = top[better] + r
    return best, arg
