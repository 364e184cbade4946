"""graph.components: connected components with the smallest node as each one's root."""

from __future__ import annotations

import numpy as np

from factory.graph import components


def _find(parent: list[int], x: int) -> int:
    while parent[x] != x:
        x = parent[x]
    return x


def test_components_root_is_the_smallest_index() -> None:
    rng = np.random.default_rng(4)
    for n, m in ((50, 30), (400, 380), (1000, 5000)):
        a, b = rng.integers(0, n, m), rng.integers(0, n, m)
        parent = list(range(n))
        for x, y in zip(a.tolist(), b.tolist()):
            rx, ry = _find(parent, x), _find(parent, y)
            parent[max(rx, ry)] = min(rx, ry)
        assert components(n, a, b).tolist() == [_find(parent, x) for x in range(n)]


def test_no_edges_and_a_long_chain() -> None:
    assert components(3, np.zeros(0, np.int64), np.zeros(0, np.int64)).tolist() == [0, 1, 2]
    n = 10_000
    backwards = np.arange(n - 1, 0, -1)
    assert components(n, backwards, backwards - 1).tolist() == [0] * n
