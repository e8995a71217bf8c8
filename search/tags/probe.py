"""A few-shot tag: a linear probe on image vectors (the seeds' features-plus-classifier),
logistic regression fitted by Newton's method in numpy.

Examples are few (5 to 50 "yes", maybe some "no"), so the library itself supplies the
negatives: a sample of its vectors counts as "not the tag", a weak label (a few of them may
be the tag) that is outweighed by what a person marked. Positives and negatives weigh the
same in total, so five examples are not drowned by two thousand library images; an L2
penalty keeps the probe from memorising five vectors.

That balance makes log-odds 0 a poor threshold (it assumes the tag is as common as not),
and a cut read from the library's scores split a common look rather than the tag; so the
threshold comes from the examples themselves, scored out of fold (bench/tags_bench.py:
F1 on two families and 5, 10, 20 examples, against both).
"""

from __future__ import annotations

import numpy as np

UNLABELED = 1000  # library vectors sampled as weak negatives (2,000: the same F1, twice the time)
MARKED_WEIGHT = 5.0  # a marked "no" counts as this many unlabeled ones
PENALTY = 0.3  # L2 on the weights (features scaled to unit variance per dimension)
# The threshold: this quantile of the positives' out-of-fold scores (each scored by a
# probe fitted without it), i.e. where about 80% of unseen images like them fall above.
FOLDS = 5
RECALL_QUANTILE = 0.2
STEPS = 25
# Newton's steps until one moves the weights less than this; then the chord method
# (bench/tags_apply_bench.py: 10 probes fitted in 0.55 s, not 0.89; weights within 3e-6).
FREEZE = 0.3
TOLERANCE = 1e-5


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
    weights, bias, _ = _Probe(library, yes, no, seed).fit(np.arange(len(yes)))
    return weights, bias


def fit_with_threshold(
    library: np.ndarray, yes: np.ndarray, no: np.ndarray, *, seed: int = 0
) -> tuple[np.ndarray, float, float]:
    """(weights, bias, threshold): the probe on every example, and the RECALL_QUANTILE of
    the positives' out-of-fold scores (log-odds 0 while there is a single positive)."""
    probe = _Probe(library, yes, no, seed)
    weights, bias, start = probe.fit(np.arange(len(yes)))
    if len(yes) < 2:
        return weights, bias, 0.0
    order = np.random.default_rng(seed).permutation(len(yes))
    unseen = []
    for held in np.array_split(order, min(FOLDS, len(yes))):
        # A fold differs from the whole fit by a few positives: started from its solution
        # with its curvature kept, it converges in a few cheap steps.
        w, b, _ = probe.fit(np.setdiff1d(np.arange(len(yes)), held), start=start)
        unseen.append(yes[held] @ w + b)
    return weights, bias, float(np.quantile(np.concatenate(unseen), RECALL_QUANTILE))


class _Probe:
    """The design shared by a tag's fits: the weak negatives sampled once, and features
    centred and scaled by them, so one penalty suits any model's width and spread."""

    def __init__(self, library: np.ndarray, yes: np.ndarray, no: np.ndarray, seed: int):
        if len(yes) == 0:
            raise ValueError("a probe needs at least one positive example")
        rng = np.random.default_rng(seed)
        pool = library
        if len(pool) > UNLABELED + len(yes) + len(no):
            pool = pool[rng.choice(len(pool), UNLABELED + len(yes) + len(no), replace=False)]
        marked = np.concatenate([yes, no]) if len(no) else yes
        if len(pool):
            # Leave the marked images out of the weak negatives (a "yes" is not also "no").
            pool = pool[(pool @ marked.T).max(axis=1) <= 1.0 - 1e-6][:UNLABELED]
        self.mean = pool.mean(axis=0) if len(pool) else marked.mean(axis=0)
        self.scale = float(pool.std(axis=0).mean()) if len(pool) > 1 else 1.0
        self.scale = self.scale or 1.0
        self.yes, self.no, self.pool = (self._z(a) for a in (yes, no, pool))

    def _z(self, a: np.ndarray) -> np.ndarray:
        return ((a - self.mean) / self.scale).astype(np.float32)

    def fit(self, rows: np.ndarray, start=None):
        """(weights, bias, (theta, inverse Hessian)) on the positives `rows`, in the
        original space; `start`: that pair from a fit to start from and keep the curvature
        of."""
        yes = self.yes[rows]
        z = np.concatenate([yes, self.no, self.pool])
        y = np.concatenate([np.ones(len(yes)), np.zeros(len(self.no) + len(self.pool))])
        weight = np.concatenate(
            [np.ones(len(yes)), np.full(len(self.no), MARKED_WEIGHT), np.ones(len(self.pool))]
        )
        # Positives and negatives weigh the same in total.
        negatives = weight[len(yes) :].sum()
        weight[: len(yes)] /= len(yes)
        if negatives:
            weight[len(yes) :] /= negatives
        theta, inverse = _newton(z, y, weight, start)
        weights = theta[:-1] / self.scale
        bias = float(theta[-1] - weights @ self.mean)
        return weights.astype(np.float32), bias, (theta, inverse)


def _newton(z: np.ndarray, y: np.ndarray, weight: np.ndarray, start=None):
    """Weighted, L2-penalised logistic regression (the bias unpenalised): (the weights with
    the bias last, the inverse of a Hessian near the solution). Newton's steps while they
    move far; from the first that moves less than FREEZE the curvature barely changes, so
    it is inverted once and kept (a chord method: each further step costs a gradient, and
    the folds start from it). The Hessian is built in float32 (most of a step's time) and
    inverted in float64. Given `start` = (theta, inverse Hessian): chord steps throughout."""
    n, d = z.shape
    a = np.concatenate([z, np.ones((n, 1), np.float32)], axis=1)
    theta, inverse = (np.zeros(d + 1), None) if start is None else (start[0].copy(), start[1])
    ridge = np.full(d + 1, PENALTY)
    ridge[-1] = 0.0
    for _ in range(STEPS * 2):
        p = 1.0 / (1.0 + np.exp(-np.clip(a @ theta.astype(np.float32), -30, 30)))
        grad = (a.T @ (weight * (p - y)).astype(np.float32)).astype(np.float64) + ridge * theta
        if inverse is None:
            root = a * np.sqrt(weight * p * (1 - p)).astype(np.float32)[:, None]
            hessian = (root.T @ root).astype(np.float64) + np.diag(ridge + 1e-9)
            move = np.linalg.solve(hessian, grad)
            if np.abs(move).max() < FREEZE:
                inverse = np.linalg.inv(hessian)
        else:
            move = inverse @ grad
        theta -= move
        if np.abs(move).max() < TOLERANCE:
            break
    return theta, np.linalg.inv(hessian) if inverse is None else inverse
