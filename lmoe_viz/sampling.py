"""Seeded samples of rows, where a limit applies (never the first N rows).

The first N rows of a paper preset's part are one or two WebVision concepts (the outlier
list is ordered by folder) or the first classes of the test list; a sample is drawn
instead: uniform without replacement, or stratified by label (classes in turn, each
class's rows shuffled), always returned in ascending row order.
"""
from __future__ import annotations

import numpy as np

#: the default seed of every sample (recorded in the logit cache key)
SAMPLE_SEED = 0


def sample_rows(n: int, limit: int | None, seed: int = SAMPLE_SEED, labels=None) -> np.ndarray:
    """Indices of ``min(limit, n)`` rows of ``n``: all rows when ``limit`` is None or >= n."""
    if limit is None or limit >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    if labels is None:
        return np.sort(rng.choice(n, size=limit, replace=False))
    labels = np.asarray(labels)
    groups = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    order = rng.permutation(len(groups))
    picked, depth = [], 0
    while len(picked) < limit:
        for g in order:
            if depth < len(groups[g]):
                picked.append(groups[g][depth])
                if len(picked) == limit:
                    break
        depth += 1
    return np.sort(np.array(picked))
