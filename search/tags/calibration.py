"""Zero-shot thresholds per tag, from the captions the library knows.

Every image a caption describes gives weak labels: a caption that holds a tag's words is a
weak "yes" for its image, one that does not a weak "no" (weak: "a red ball on grass" says
nothing of the grass being green). An image is described by the caption typed for it, else
by the NEAREST known captions (typed for other images, or a saved model's training
captions) the model puts closest to it: self-labelling, which needs no typed caption at all
once a model has been trained here; its label for a tag is the share of those captions
holding the tag's words (search.query.relevance.Described, weak_labels below). Each tag's
threshold is the cut with the best expected F1 against those labels, pulled toward one
global threshold (the best for all tags at once on the same labels) as if PRIOR more
examples had agreed with the global one: a tag that three captions mention does not get a
threshold from three points, one that many mention gets its own. Without any known
caption there is nothing to learn from, and the caller keeps the library cutoff
(search.query.relevance).

Why not the library's own scores alone: a tag's score over the library has no mode of its
own when few images hold it ("red cross" in 2% of them), and the two-Gaussian split then
separates a common look instead. bench/tags_bench.py has the figures, on three families.
Why 16 captions and half credit for words apart, not the one nearest caption's bag of
words: on every family × model row of that bench the mean F1 is as good or better (the
notes there).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol

import numpy as np

PRIOR = 2.0  # pseudo-examples at the global threshold (bench: 2 and 5 within 0.02 of each other)
GRID = 401  # global thresholds tried: quantiles of every tag's captioned scores
NEAREST = 16  # known captions that describe an image without a typed one
# How far the model's captions of untyped images are trusted for a query or tag: by the AUC
# of its scores on the typed images (at least MIN_TYPED holding its words and MIN_TYPED
# not), none at 0.5 (chance), fully from FULL_TRUST. bench/relevance_bench.py, a tenth
# typed: shapes weak 0.835 -> 0.879 of the oracle; full trust only from an AUC of 0.9 or 1.0
# cost patterns trained 0.852 -> 0.847 and 0.844; at least 10 typed each way gave shapes
# weak 0.861 (the notes there).
MIN_TYPED = 5
FULL_TRUST = 0.75
# Words that say nothing of what is in a picture ("a photo of the sea").
_FILLER = frozenset(
    ("a", "an", "the", "of", "by", "at", "in", "on", "with", "and", "or", "to")
    + ("photo", "picture", "image")
)
_WORD = re.compile(r"[^\W\d_]+")


def _stem(word: str) -> str:
    """Enough of English inflection that "foggy hills" matches "fog over a hill":
    plurals and the -y of adjectives from nouns (a doubled last consonant with it)."""
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        word = word[:-1]
    if len(word) > 4 and word.endswith("y"):
        word = word[:-1]
        if word[-1] == word[-2]:
            word = word[:-1]
    return word


def terms(text: str) -> tuple[str, ...]:
    """The content words of a text, stemmed, in their order."""
    return tuple(_stem(w) for w in _WORD.findall(text.lower()) if w not in _FILLER)


def nearest_known(vectors: np.ndarray, known_vectors: np.ndarray, many: int = 1) -> np.ndarray:
    """The rows of `known_vectors` closest to each of `vectors`: one column each of the
    `many` nearest (all of them where fewer are known), -1 for a vector that scores
    nothing (a broken one's NaN)."""
    many = min(many, len(known_vectors))
    if not len(vectors) or not many:
        return np.zeros((len(vectors), many), dtype=np.int64)
    import faiss  # the index's: not loaded for a process that never matches captions

    # FAISS's exact k-NN keeps a heap per row while it multiplies block by block, where
    # numpy needs the whole product and then a partition of each row (5,000 images ×
    # 6,000 captions × 512, 16 nearest, median of 7: 0.28 s against 0.38 s; the product
    # and one argmax, the single nearest caption: 0.21 s).
    _, found = faiss.knn(
        np.ascontiguousarray(vectors, dtype=np.float32),
        np.ascontiguousarray(known_vectors, dtype=np.float32),
        many,
        metric=faiss.METRIC_INNER_PRODUCT,
    )
    return found.astype(np.int64)


class Holding(Protocol):
    """What the captions say of a sample of images (search.query.relevance.Described), and
    which of them a person captioned."""

    typed: np.ndarray

    def holding(self, text: str, *, close: bool = True) -> np.ndarray: ...


def weak_labels(names: Sequence[str], described: Holding, scores: np.ndarray) -> np.ndarray:
    """tags × described images: how far each image's captions hold the tag's words. A
    caption holding them close together counts whole, one holding them apart half: "a red
    star on a green background" is no "red background", but a landscape's long caption holds
    "mountains at night" apart ("mountains with two houses under the stars at night").
    `scores`: each tag's against the images, which say how far to trust the model's
    captions of them (trusted)."""
    if not names:
        return np.zeros((0, 0))
    return np.stack(
        [
            trusted(
                (described.holding(n) + described.holding(n, close=False)) / 2.0, s, described.typed
            )
            for n, s in zip(names, scores)
        ]
    )


def trusted(
    weak: np.ndarray,
    scores: np.ndarray,
    typed: np.ndarray,
    checked: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """The weak labels with the model's say discounted by how well `scores` (a query's or
    a tag's) rank the images a person captioned (`typed`: their labels are the truth), and
    the `checked` ones besides (their labels and scores: a trained model's own pairs). A
    model at chance on a query describes images by captions that agree with its own
    ranking, not with the truth: the untyped images' labels then fall back to the share
    the typed and checked images hold."""
    return discounted(weak, typed, *trust_in(weak, scores, typed, checked))


def discounted(weak: np.ndarray, typed: np.ndarray, trust: float, share: float) -> np.ndarray:
    """The untyped images' labels trusted as far as `trust`, the rest of the way the
    `share` of typed and checked images that hold the words (trust_in)."""
    if trust == 1.0:
        return weak
    out = weak.copy()
    out[~typed] = trust * weak[~typed] + (1.0 - trust) * share
    return out


def trust_in(
    weak: np.ndarray,
    scores: np.ndarray,
    typed: np.ndarray,
    checked: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[float, float]:
    """How far trusted() trusts the model's labels of untyped images (0 to 1: full trust
    where too few typed and checked images say either way), and the share of those
    images that hold the labels' words."""
    said, ranked = weak[typed], scores[typed]
    if checked is not None:
        said, ranked = np.concatenate([said, checked[0]]), np.concatenate([ranked, checked[1]])
    positives = float(said.sum())
    negatives = len(said) - positives
    if min(positives, negatives) < MIN_TYPED:
        return 1.0, 0.0
    # The AUC with labels that may be shares: each typed image's "yes" weight times the
    # "no" weight scored below it, over all pairs.
    order = np.argsort(ranked, kind="stable")
    yes = said[order]
    no_below = np.cumsum(1.0 - yes) - (1.0 - yes)
    auc = float(yes @ no_below) / (positives * negatives)
    return min(max((auc - 0.5) / (FULL_TRUST - 0.5), 0.0), 1.0), positives / len(said)


def thresholds(scores: np.ndarray, weak: np.ndarray) -> np.ndarray | None:
    """Per tag (rows of `scores`, tags × captioned images), its threshold from the weak
    labels; None when no tag has a weak "yes"."""
    positives = weak.sum(axis=1)
    if not positives.any():
        return None
    curves = [_Curve(s, w) for s, w in zip(scores, weak)]
    grid = np.quantile(scores[positives > 0], np.linspace(0.0, 1.0, GRID))
    mean_f1 = np.mean([c.f1_at(grid) for c, p in zip(curves, positives) if p], axis=0)
    shared = float(grid[int(np.argmax(mean_f1))])
    own = np.array([c.best() if p else shared for c, p in zip(curves, positives)])
    return ((positives * own + PRIOR * shared) / (positives + PRIOR)).astype(np.float64)


def best_cut(scores: np.ndarray, weak: np.ndarray, order: np.ndarray | None = None) -> float:
    """The threshold on `scores` with the best F1 against the weak labels `weak` (each
    true/false, or a share of 1: the expected F1). `order`: the scores' ranking, best
    first (ranking(scores)), where the caller has it already."""
    return _Curve(scores, weak, order).best()


def ranking(scores: np.ndarray) -> np.ndarray:
    """The positions of `scores`, best first (ties in their order)."""
    return np.argsort(-scores, kind="stable")


def cut_after(ranked: np.ndarray, k: int) -> float:
    """The threshold that keeps the first k of `ranked` (scores, best first): halfway
    between the last kept and the next."""
    below = ranked[k] if k < len(ranked) else ranked[-1] - 1e-3
    return float((ranked[k - 1] + below) / 2.0)


class _Curve:
    """One tag's F1 against its weak labels as the threshold moves."""

    def __init__(
        self, scores: np.ndarray, weak: np.ndarray, order: np.ndarray | None = None
    ) -> None:
        order = ranking(scores) if order is None else order
        self.sorted = scores[order]
        # Weak "yes" in the top k: labels may be shares (how many of an image's captions say it).
        self.hits = np.concatenate([[0], np.cumsum(weak[order], dtype=np.float64)])
        self.positives = float(weak.sum())

    def f1_at(self, cuts: np.ndarray) -> np.ndarray:
        """F1 of "score ≥ cut" for each cut."""
        taken = np.searchsorted(-self.sorted, -cuts, side="right")
        return 2.0 * self.hits[taken] / np.maximum(taken + self.positives, 1)

    def best(self) -> float:
        """The cut with the best F1: halfway between the last score kept and the next."""
        taken = np.arange(1, len(self.sorted) + 1)
        k = int(np.argmax(2.0 * self.hits[1:] / (taken + self.positives))) + 1
        return cut_after(self.sorted, k)
