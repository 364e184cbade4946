"""Connected components of an undirected graph given as edge lists: what near_dedup (clusters of
near copies), splits (groups that go whole to one split) and conflicts (rows linked across labels)
each need.

Hand-written in numpy rather than on `scipy.sparse.csgraph.connected_components`: scipy reaches an
install only through the `eval` and `tables` extras (scikit-learn, sentence-transformers, sdmetrics),
while near_dedup and the splits run on the core install, which has numpy alone. Both give the same
partition, at about the same speed (1M nodes and 0.8M random edges: 0.22 s here, 0.17 s with scipy
plus the step that turns its labels into smallest members).
"""

from __future__ import annotations

import numpy as np


def components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Root of every node's connected component, for nodes 0..n-1 and edges a[k]-b[k]: the
    component's smallest node (callers keep it, or list components in order of it).

    Vectorised hooking: each pass hooks every root to the smallest root it has an edge to (high to
    low, so no cycles), then jumps pointers until every node points at its root."""
    parent = np.arange(n, dtype=np.int64)
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    while len(a):
        ra, rb = parent[a], parent[b]
        lo, hi = np.minimum(ra, rb), np.maximum(ra, rb)
        moving = lo != hi
        if not moving.any():
            break
        np.minimum.at(parent, hi[moving], lo[moving])
        while True:
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped
    return parent
