"""Near-duplicate clusters: connected components of the pair graph, by union-find.

Contract: ``components(n, pairs)`` returns an int64 array ``label`` of length ``n``;
``label[i]`` is the smallest row of ``i``'s component, so a row in no pair is its own label.
Components are transitive: chains join. If ``a ~ b`` and ``b ~ c`` then ``a``, ``b`` and
``c`` form one cluster even when ``a`` and ``c`` are farther apart than the radius.

The union-find is vectorised: each round hooks every root that an edge still crosses onto
the smallest root it meets, then compresses paths fully; parents only ever decrease, so
there are no cycles and the number of roots falls every round.
"""
from __future__ import annotations

import numpy as np


def components(n: int, pairs: np.ndarray) -> np.ndarray:
    """Component label (smallest member row) for each of ``n`` rows joined by ``pairs`` ``(K, 2)``."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if pairs.size and (pairs.min() < 0 or pairs.max() >= n):
        raise ValueError(f"pairs refer to rows outside 0..{n - 1}")
    parent = np.arange(n, dtype=np.int64)
    u, v = pairs[:, 0], pairs[:, 1]
    while u.size:
        ru, rv = parent[u], parent[v]
        crossing = ru != rv
        u, v, ru, rv = u[crossing], v[crossing], ru[crossing], rv[crossing]
        if not u.size:
            break
        np.minimum.at(parent, np.maximum(ru, rv), np.minimum(ru, rv))
        while True:  # path compression: point every row at its root
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand
    return parent
