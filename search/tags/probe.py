"""A few-shot tag: a linear probe on image vectors (the seeds' features-plus-classifier),
logistic regression fitted by Newton's method in numpy.

Examples are few (5 to 50 "yes", maybe some "no"), so the library itself supplies the
negatives: a sample of its vectors counts as "not the tag", a weak label (a few of them may
be the tag) that is outweighed by what a person marked. Positives and negatives weigh the
same in total, so five examples are not drowned by two thousand library images; an L2
penalty keeps the probe from memorising five vectors.
"""

from __future__ import annotations

import numpy as np

UNLABELED = 2000  # library vectors sampled as weak negatives
MARKED_WEIGHT = 5.0  # a marked "no" counts as this many unlabeled ones
PENALTY = 1.0  # L2 on the weights (features scaled to unit variance per dimension)
STEPS = 25
TOLERANCE = 1e-6


def fit_probe(
    library: np.ndarray,
    yes: np.ndarray,
    no: np.ndarray,
    *,
    seed: int = 0,
) -> tuple[np.ndarray, float]:
    """(weights, bias) such that weights · v + bias is the log-odds that vector v holds
    the tag, from marked `yes` and `no` vectors and the `library`'s (unit rows, one model).
    Library rows equal to a marked one are not used as weak negatives."""
    if len(yes) == 0:
        raise ValueError("a probe needs at least one positive example")
    rng = np.random.default_rng(seed)
    pool = library
    marked = np.concatenate([yes, no]) if len(no) else yes
    if len(pool) and len(marked):
        # Leave the marked images out of the weak negatives (a "yes" must not also be "no").
        same = (pool @ marked.T).max(axis=1) > 1.0 - 1e-6
        pool = pool[~same]
    if len(pool) > UNLABELED:
        pool = pool[rng.choice(len(pool), UNLABELED, replace=False)]
    x = np.concatenate([yes, no, pool]).astype(np.float64)
    y = np.concatenate([np.ones(len(yes)), np.zeros(len(no) + len(pool))])
    weight = np.concatenate(
        [np.full(len(yes), 1.0), np.full(len(no), MARKED_WEIGHT), np.ones(len(pool))]
    )
    negatives = weight[len(yes) :].sum()
    weight[: len(yes)] /= len(yes)
    if negatives:
        weight[len(yes) :] /= negatives
    # Centre and scale so one penalty suits any model's width and spread.
    mean = x.mean(axis=0)
    scale = x.std(axis=0).mean() or 1.0
    z = (x - mean) / scale
    w, b = _newton(z, y, weight)
    weights = w / scale
    return weights.astype(np.float32), float(b - weights @ mean)


def _newton(z: np.ndarray, y: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, float]:
    """Weighted, L2-penalised logistic regression (the bias unpenalised)."""
    n, d = z.shape
    a = np.concatenate([z, np.ones((n, 1))], axis=1)
    theta = np.zeros(d + 1)
    ridge = np.full(d + 1, PENALTY)
    ridge[-1] = 0.0
    for _ in range(STEPS):
        p = 1.0 / (1.0 + np.exp(-np.clip(a @ theta, -30, 30)))
        grad = a.T @ (weight * (p - y)) + ridge * theta
        hess = (a * (weight * p * (1 - p))[:, None]).T @ a + np.diag(ridge + 1e-9)
        move = np.linalg.solve(hess, grad)
        theta -= move
        if np.abs(move).max() < TOLERANCE:
            break
    return theta[:-1], float(theta[-1])
