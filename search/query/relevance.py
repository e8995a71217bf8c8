"""Where relevance ends for one query: a cutoff on its cosine scores.

One global threshold fails because scores shift per query and per model (a top hit at 0.91
with junk from 0.93 in one query, 0.88 highly relevant in another). So the cutoff is read
from the query's own scores against the library. Those are a mixture: groups of unrelated
images (often several: a query for "red" scores orange photos above blue ones) and, at the
top, the images that match. Otsu's split (the threshold that maximises the variance between
the two sides) separates the top group from the rest when there are two groups; with
several, its first split lands between unrelated groups, so the split is repeated within
the upper side for as long as that side is itself clearly two groups (Otsu's separability
η = between-class / total variance of at least STOP; one Gaussian cut in two gives
2/π ≈ 0.64, so a single group is left whole). bench/relevance_bench.py measures it against
an oracle per-query threshold, the best global one and the alternatives tried.
"""

from __future__ import annotations

import numpy as np

STOP = 0.75
MIN_GROUP = 8  # an upper side smaller than this is not split again


def cutoff(scores: np.ndarray) -> float:
    """The lowest score that counts as relevant, for `scores` of one query against (a
    spread of) the library. With fewer than two distinct scores nothing is told apart and
    every image counts."""
    s = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
    if len(s) < 2 or s[0] == s[-1]:
        return float(s[-1]) if len(s) else 0.0
    cut, _ = _otsu(s)
    while True:
        upper = s[s >= cut]
        if len(upper) < MIN_GROUP or upper[0] == upper[-1]:
            return cut
        inner, separability = _otsu(upper)
        if separability < STOP:
            return cut
        cut = inner


def _otsu(s: np.ndarray) -> tuple[float, float]:
    """Otsu's split of `s` (sorted, best first, not all equal): the lowest score of the
    upper side, and the separability η of the split."""
    n = len(s)
    total = np.cumsum(s)
    top = np.arange(1, n)
    between = top * (n - top) * (total[:-1] / top - (total[-1] - total[:-1]) / (n - top)) ** 2
    # Only a split between two different scores is a split (ties stay together).
    between[s[:-1] == s[1:]] = -1.0
    k = int(np.argmax(between))
    return float(s[k]), float(between[k] / (n * n * s.var()))
