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

Where the library knows captions (typed for its photos, or the training captions of a model
saved here), they say more than the scores' shape. Each image of the sample is described by
the caption typed for it, else by the NEAR known captions the model puts nearest it; the
share of those that hold a query's words is the image's weak label for that query, and the
cut with the best expected F1 against those labels, pulled toward the two Gaussians' cutoff
as if PRIOR more images had agreed with it, is the query's cutoff, moved toward where the
labels' rate drops down the ranking as far as that drop is sharp: captions name part of
what is relevant ("dusk" where the query says "sunset"), see _drop. A query's words count
when they fall close together in a caption ("red background" is not held by "a red star on
a green background"). Why many captions and not the nearest one: one caption says one thing
of an image, so the one nearest names "mountains" or "sunset" but seldom "mountains at
sunset", and a query of two things found a small share of its images labelled and cut far
too high. Same bench: above the best global threshold on all six rows, mean F1 up on five
against the nearest caption alone (the notes there). Where a person typed captions, and
where the model was trained here (the trainer saves its pairs' images, embedded, beside
it), the query's ranking of those images (its AUC) says how far to trust the model's
captions of the rest: a model at chance on a query picks captions that agree with its own
ranking.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from search.tags import calibration

START_TOP = 0.1  # the share of best scores the upper Gaussian starts from
MAX_STEPS = 100
TOLERANCE = 1e-2  # stop once no mean moves by more than this share of the scores' sd
MIN_SD = 1e-4  # keeps a Gaussian from collapsing onto one repeated score
BINS = 256
# Pseudo-images at the two Gaussians' cutoff, against the weak labels' count: a query few
# captions speak for keeps near its scores' own cut. Once the drop below (_drop) moved the
# cuts of well-trained models, the 8 kept before cost patterns 0.005-0.02 of the oracle on
# both seeds of bench/relevance_bench.py; 0 and 1 came within 0.01 of each other.
PRIOR = 1.0
# How sharp the weak labels' drop down a query's ranking (the share of their variance a
# two-rate split explains) before it is trusted at all, and fully (_drop). A trade on the
# bench's seeds 0 and 1: from 0.6, scenes well trained with a fifth typed fell under its
# best global threshold at 8,000 images (0.954 against 0.960); from 0.5, patterns weak
# lost 0.006-0.015 of the oracle at 2,000 images (the notes there). Checked on seed 2.
STEP_NONE, STEP_FULL = 0.5, 0.9
# The known captions that describe an untyped image: its NEAR nearest, a query's weak label
# for it the share of them holding the query's words. One caption says one thing of an
# image ("mountains", not "at sunset"); 32 gave every family × model row of the bench a
# better or equal mean F1 than 1 but patterns, well trained (0.853 vs 0.867 of the oracle),
# and 16 or 64 came within 0.02 of 32 (the notes there).
NEAR = 32
# A query's words are held by a caption when they span at most their number plus SLACK of
# its content words ("large circle" in "a large red circle"), in any order.
SLACK = 1


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


class Described:
    """What the library's captions say of a sample of its images: the captions (as terms,
    search.tags.calibration.terms) that describe each row of it."""

    def __init__(
        self,
        captions: Sequence[tuple[str, ...]],
        rows: np.ndarray | None = None,
        typed: np.ndarray | None = None,
        checked: Checked | None = None,
    ) -> None:
        """`rows`: each image's captions, as indices into `captions` (images × captions
        each); by default one caption an image, the i-th the i-th's. `typed`: the images
        a person captioned (by default none). `checked`: the model's own pairs, if saved."""
        self.checked = checked
        self._distinct = list(dict.fromkeys(captions))  # captions repeat
        at = {c: k for k, c in enumerate(self._distinct)}
        column = np.array([at[c] for c in captions], dtype=np.int64)
        self._rows = column[:, None] if rows is None else column[rows]
        self.typed = np.zeros(len(self._rows), bool) if typed is None else np.asarray(typed, bool)
        self._postings: dict[str, set[int]] = {}
        for k, caption in enumerate(self._distinct):
            for word in caption:
                self._postings.setdefault(word, set()).add(k)

    @classmethod
    def of(
        cls,
        typed: Sequence[str | None],
        known: Sequence[str],
        nearest: np.ndarray,
        checked: Checked | None = None,
    ) -> Described:
        """Each image described by the caption typed for it (`typed`: None where none),
        else by the known captions the model puts nearest it (`nearest`: its row, indices
        into `known`, at least one column; -1 for none)."""
        used, rows = np.unique(nearest, return_inverse=True)
        rows = rows.reshape(nearest.shape)
        # -1: the image's vector matched no caption (a broken one): it says nothing.
        captions = [calibration.terms(known[j]) if j >= 0 else () for j in used.tolist()]
        for i, text in enumerate(typed):
            if text is not None:  # what a person said of it outweighs what the model finds
                rows[i] = len(captions)
                captions.append(calibration.terms(text))
        return cls(captions, rows, np.array([t is not None for t in typed], dtype=bool), checked)

    def holding(self, text: str, *, close: bool = True) -> np.ndarray:
        """For each image, the share of its captions that hold the text's content words
        close together (`close`), or anywhere in them."""
        query = calibration.terms(text)
        held = np.zeros(len(self._distinct), dtype=bool)
        if query:
            wanted = set(query)
            for k in set.intersection(*(self._postings.get(w, set()) for w in wanted)):
                held[k] = not close or _close(wanted, self._distinct[k])
        return held[self._rows].mean(axis=1)


def _close(wanted: set[str], caption: tuple[str, ...]) -> bool:
    """Whether some span of `caption` no longer than len(wanted) + SLACK holds them all.
    One pass with a sliding window: a long caption that repeats the words of a long
    query must not cost their combinations."""
    if len(wanted) == 1:
        return True
    seen: dict[str, int] = {}
    left = 0
    for right, word in enumerate(caption):
        if word not in wanted:
            continue
        seen[word] = seen.get(word, 0) + 1
        while len(seen) == len(wanted):  # the window [left, right] holds every word
            if right - left + 1 <= len(wanted) + SLACK:
                return True
            dropped = caption[left]
            left += 1
            if dropped in seen:
                seen[dropped] -= 1
                if not seen[dropped]:
                    del seen[dropped]
    return False


@dataclass(frozen=True)
class Checked:
    """Images whose captions are sure, apart from the library: the pairs a model was trained
    and validated on, embedded by it and saved beside it (search.models.spec.PAIRS). How a
    query ranks them says whether the model knows the query, as typed captions do; on
    bench/relevance_bench.py's weak models most colour+shape queries rank at chance."""

    vectors: np.ndarray  # one row an image
    captions: Described  # one row a caption
    image_of: np.ndarray  # each caption's image

    @classmethod
    def load(cls, path) -> Checked | None:
        """The pairs saved at `path`; None where there are none or they cannot be read (a
        model saved before they were, or damaged: the check is optional)."""
        try:
            with np.load(path, allow_pickle=False) as f:
                vectors = f["vectors"].astype(np.float32)
                texts, image_of = f["captions"].tolist(), f["image_of"].astype(np.int64)
        except (OSError, ValueError, KeyError):
            return None
        if len(texts) != len(image_of) or (len(image_of) and image_of.max() >= len(vectors)):
            return None
        return cls(vectors, Described([calibration.terms(t) for t in texts]), image_of)

    def holding(self, text: str) -> np.ndarray:
        """Per image: 1 where one of its captions holds the text's words close together."""
        held = np.zeros(len(self.vectors))
        np.maximum.at(held, self.image_of, self.captions.holding(text))
        return held


@dataclass(frozen=True)
class Reference:
    """What one query's cutoff is read from: a spread of the library's vectors and, where
    the library knows captions, what they say of those images (else None)."""

    vectors: np.ndarray
    described: Described | None = None

    def cutoff(self, vector: np.ndarray, text: str | None = None) -> float:
        """The cutoff for a query's `vector`; `text` when the query is that text alone."""
        # The pairs are scored only for a text query: nothing else reads them.
        pairs = self.described.checked if self.described is not None and text else None
        return self.cut(
            self.vectors @ vector, text, None if pairs is None else pairs.vectors @ vector
        )

    def cut(
        self, scores: np.ndarray, text: str | None = None, checked: np.ndarray | None = None
    ) -> float:
        """The cutoff for a query that scores `scores` against `vectors` (and `checked`
        against the described's checked images, where it has them)."""
        own = cutoff(scores)
        if self.described is None or not text:
            return own
        pairs = self.described.checked
        sure = None if pairs is None or checked is None else (pairs.holding(text), checked)
        said, typed = self.described.holding(text), self.described.typed
        trust, share = calibration.trust_in(said, scores, typed, sure)
        weak = calibration.discounted(said, typed, trust, share)
        held = float(weak.sum())
        if held == 0 or weak.min() == 1.0:
            return own  # no caption speaks for or against it
        order = calibration.ranking(scores)  # one sort for both cuts: on every search's path
        best = calibration.best_cut(scores, weak, order)
        fitted = (held * best + PRIOR * own) / (held + PRIOR)
        drop, sharp = _drop(scores[order], said[order], typed[order])
        sharp *= trust  # read from the model's captions: trusted as far as they are
        return (1.0 - sharp) * fitted + sharp * drop


def _drop(ranked: np.ndarray, weak: np.ndarray, typed: np.ndarray) -> tuple[float, float]:
    """For a query's scores `ranked` best first, with its weak labels and the typed images
    in that order: where the labels, read down the ranking, drop from the rate its relevant
    images hold them at to a lower one; and how far to trust that over the labels' best-F1
    cut (0 to 1), by how sharp the drop is among the images nobody typed a caption for.

    Why: captions name part of what is relevant ("desert at dusk" for a query of "desert at
    sunset"), so a relevant image's captions hold the query's words at some rate under 1.
    The best-F1 cut against the labels takes them for complete and stops where their count
    runs out, too early by that rate: on bench/relevance_bench.py's scenes, well trained,
    it kept 94 of 164 desert scenes at sunset, every one of them ranked above the rest,
    whose labels ran at 0.09 down to the 164th and at 0 below. Where the model half knows
    a query the labels fade down its ranking instead of dropping, and the best-F1 cut stays.
    Read from whether an image's labels say anything, not from their share: a relevant
    image's 32 nearest captions may hold the words at a rate of 0.05, a share that is
    mostly counting noise, but one of them holds them four times in five. And its
    sharpness without the typed images: a person's caption is a whole "yes" or "no", noise
    that blurs a clean step (on the same bench at 8,000 images and a fifth typed, the drop
    read from the shares was trusted for none of the four scenes queries that lost most,
    and well trained kept 0.927 of the oracle, under its best global threshold; read from
    whether they say anything, 0.966). The drop is read from the model's captions, and
    trusted no further than they are (calibration.trust_in)."""
    labels = (weak > 0.0).astype(np.float64)
    k, _ = _split(labels)
    _, sharp = _split(labels[~typed])
    trust = (sharp - STEP_NONE) / (STEP_FULL - STEP_NONE)
    return calibration.cut_after(ranked, k), min(max(trust, 0.0), 1.0)


def _split(labels: np.ndarray) -> tuple[int, float]:
    """The split of ranked `labels` into a top k at one rate and the rest at a lower one
    that explains most of their variance (k at least their sum: the top holds every label
    it explains), and the share of their variance it explains (0 where they do not vary)."""
    n = len(labels)
    total = float(labels.var()) * n
    if n < 2 or total <= 0.0:
        return n, 0.0
    sums = np.cumsum(labels, dtype=np.float64)
    k = np.arange(1, n)
    top, rest = sums[:-1] / k, (sums[-1] - sums[:-1]) / (n - k)
    between = k * (n - k) / n * (top - rest) ** 2
    between[(top <= rest) | (k < np.floor(sums[-1]))] = -1.0
    best = int(np.argmax(between))
    return best + 1, max(float(between[best]), 0.0) / total
