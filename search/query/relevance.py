"""Where relevance ends for one query: a cutoff on its cosine scores.

One global threshold fails because scores shift per query and per model (a top hit at 0.91
with junk from 0.93 in one query, 0.88 highly relevant in another). So the cutoff is read
from the query's own scores against the library: a mixture of two Gaussians is fitted to
them by EM, one started on the best tenth (the images that match) and one on the rest, and
the cutoff is the lowest score from which the upper one is the likelier. Measured against
an oracle per-query threshold, the best global one and the alternatives tried (Otsu's split,
repeated Otsu splits, a mixture of up to four Gaussians chosen by BIC, gaps, MAD) on three
generated families and two model qualities in bench/relevance_bench.py: two Gaussians beat
the repeated Otsu splits they replace on four of six family × model rows (mean F1 / oracle
0.728 vs 0.637); up to four Gaussians by BIC reached 0.72 at three fits per query. None
reaches 0.85 of the oracle on every row (the notes there).
"""

from __future__ import annotations

import math

import numpy as np

START_TOP = 0.1  # the share of best scores the upper Gaussian starts from
MAX_STEPS = 100
TOLERANCE = 1e-2  # stop once no mean moves by more than this share of the scores' sd
MIN_SD = 1e-4  # keeps a Gaussian from collapsing onto one repeated score
BINS = 256


def cutoff(scores: np.ndarray) -> float:
    """The lowest score that counts as relevant, for `scores` of one query against (a
    spread of) the library. With fewer than two distinct scores nothing is told apart and
    every image counts."""
    s = np.asarray(scores, dtype=np.float64)
    s = s[np.isfinite(s)]  # a broken vector's NaN would stop the histogram
    if len(s) < 2 or s.min() == s.max():
        return float(s.min()) if len(s) else 0.0
    upper = s >= np.quantile(s, 1.0 - START_TOP)
    if upper.all():  # most scores tie at the bottom: start from the top score alone
        upper = s == s.max()
    # (lower, upper) Gaussians: weight, mean, sd.
    low = [1.0 - upper.mean(), s[~upper].mean(), max(s[~upper].std(), MIN_SD)]
    high = [upper.mean(), s[upper].mean(), max(s[upper].std(), MIN_SD)]
    # EM over a fine histogram instead of every score: the same fit in a fraction of the
    # time (the cutoff is on every search's path), with the two components written out
    # rather than broadcast, for the same reason.
    counts, edges = np.histogram(s, bins=BINS)
    kept = counts > 0
    x, n = ((edges[:-1] + edges[1:]) / 2)[kept], counts[kept].astype(np.float64)
    for _ in range(MAX_STEPS):
        d_low, d_high = _density(x, *low), _density(x, *high)
        share = d_high / np.maximum(d_low + d_high, 1e-300)
        moved = 0.0
        for g, resp in ((low, n * (1.0 - share)), (high, n * share)):
            mass = max(resp.sum(), 1e-12)
            mean = float(resp @ x) / mass
            moved = max(moved, abs(mean - g[1]))
            sd = math.sqrt(float(resp @ (x - mean) ** 2) / mass)
            g[:] = [mass / n.sum(), mean, max(sd, MIN_SD)]
        if moved < TOLERANCE * s.std():
            break
    if high[1] < low[1]:
        low, high = high, low
    # Above the lower mean only: far below it the narrower Gaussian can be the likelier again.
    above = s[(_density(s, *high) >= _density(s, *low)) & (s >= low[1])]
    return float(above.min()) if len(above) else float(s.max())


def _density(x: np.ndarray, weight: float, mean: float, sd: float) -> np.ndarray:
    """Each score's weighted density under one Gaussian (without the shared 1/√2π)."""
    return weight / sd * np.exp(-0.5 * ((x - mean) / sd) ** 2)
