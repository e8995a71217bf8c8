"""Fitting tags to a model and applying them to the library, from stored vectors only.

A tag's scorer is linear in a model's image space: a zero-shot tag's is its prompts'
text embedding (averaged over phrasings, search.tags.vocabulary), a taught tag's a probe
fitted on marked examples (search.tags.probe, which also sets its threshold from the
examples scored out of fold). A zero-shot tag's threshold is calibrated per tag: against
the captions typed into the library where they mention tags (search.tags.calibration),
else from that tag's own scores over the library, with the cutoff searches use
(search.query.relevance: two Gaussians, the images that hold the tag and the rest).
Marked examples always win over the threshold. Every result is stored under the model it
was computed with, so a model switch never shows a tag computed from another model's
vectors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from search.catalog.records import TagInfo, TagScore
from search.errors import QueryError
from search.models.encoder import Encoder
from search.query import relevance
from search.tags import calibration
from search.tags.describe import KnownCaptions
from search.tags.probe import fit_with_threshold
from search.tags.vocabulary import phrasings

if TYPE_CHECKING:  # the catalog brings SQLAlchemy, the index FAISS
    from search.catalog.store import Catalog
    from search.index.store import IndexStore


@dataclass(frozen=True)
class Applied:
    name: str
    kind: str
    count: int
    threshold: float


CALIBRATION_SAMPLE = 5_000  # uncaptioned images a model describes to calibrate against

# (the model revision they reflect, image ids, vectors) of a model's whole library.
Library = tuple[int, np.ndarray, np.ndarray]


class Tagger:
    def __init__(
        self,
        catalog: Catalog,
        encoder_for: Callable[[str], Encoder],
        vectors_for: Callable[[str], Library] | None = None,
        captions_for: KnownCaptions | None = None,
    ) -> None:
        """`encoder_for`: a model id's encoder, loaded only when a prompt needs embedding.
        `vectors_for`: the library's vectors for a model (default: the catalog's; from
        the served index, see index_vectors, they cost a fraction of that).
        `captions_for`: the captions the library knows, embedded by a model (default:
        only the captions typed for its images calibrate, not the rest it knows)."""
        self.catalog = catalog
        self._encoder_for = encoder_for
        self._vectors_for = vectors_for or self._catalog_vectors
        self._captions_for = captions_for

    def _catalog_vectors(self, model_id: str) -> Library:
        revision = self.catalog.model_revision(model_id)
        return revision, *self.catalog.vectors(model_id)

    def add(self, model_id: str | None, prompts: dict[str, tuple[str, ...]]) -> list[TagInfo]:
        """Define zero-shot tags (name → prompts) and apply them for `model_id` (None:
        nothing indexed yet; the first index run applies them)."""
        tags = [self.catalog.tags.define(n, "prompt", p) for n, p in prompts.items()]
        if model_id is not None:
            self.apply(model_id, tags)
        return tags

    def teach(self, model_id: str | None, name: str, yes: list[int], no: list[int]) -> TagInfo:
        """Mark images as being the tag or not (a new name becomes a tag taught from
        examples alone, e.g. a made-up word) and fit it again for `model_id`."""
        tag = self.catalog.tags.teach(name, yes, no, create=True)
        if model_id is not None:
            self.apply(model_id, [tag])
        return tag

    def apply(self, model_id: str, tags: list[TagInfo] | None = None) -> list[Applied]:
        """Bring `tags` (default: every tag not current for the model) up to date with the
        model's vectors; returns what each now holds. A taught tag none of whose "yes"
        images has a vector for the model yet is left for a later run."""
        todo = self.catalog.tags.stale(model_id) if tags is None else tags
        if not todo:
            return []
        revision, ids, vectors = self._vectors_for(model_id)
        rows = _Rows(ids)
        fitted = [(tag, self._fit(tag, model_id, rows, vectors)) for tag in todo]
        fitted = [(tag, f) for tag, f in fitted if f is not None]
        if not fitted:
            return []
        # Every tag scored in one matrix product (50 tags over 100k vectors: a tenth of
        # the time of one product per tag).
        weights = np.stack([f[0] for _, f in fitted], axis=1)
        all_scores = vectors @ weights if len(ids) else np.zeros((0, len(fitted)), np.float32)
        from_captions = self._from_captions(model_id, fitted, rows, vectors)
        results, summaries = [], []
        for k, (tag, (w, bias, threshold, yes, no)) in enumerate(fitted):
            scores = all_scores[:, k] + bias
            if threshold is None:
                threshold = from_captions.get(tag.name)
            if threshold is None:
                threshold = relevance.cutoff(scores) if len(scores) else 0.0
            held = scores >= threshold
            held[rows.of(yes)] = True
            held[rows.of(no)] = False
            score = TagScore(w, bias, threshold, tag.version, revision)
            results.append((tag.id, score, ids[held], scores[held]))
            summaries.append(Applied(tag.name, tag.kind, int(held.sum()), threshold))
        stored = self.catalog.tags.apply(model_id, results)
        return [summary for summary, ok in zip(summaries, stored) if ok]

    def _fit(self, tag: TagInfo, model_id: str, rows: _Rows, vectors: np.ndarray):
        """(weights, bias, threshold or None (calibrate on the library's scores), yes ids,
        no ids), or None when there is nothing to fit from. A scorer fitted from this
        version of the tag is kept: new images change a probe's weak negatives a little,
        not what the examples say, and a prompt's embedding not at all."""
        held = self.catalog.tags.scorer(tag.id, model_id)
        current = held is not None and held.tag_version == tag.version
        none = np.zeros(0, np.int64)
        if tag.kind != "probe":
            weights = held.weights if current else self.prompt_vector(model_id, tag.prompts)
            return weights, 0.0, None, none, none
        yes, no = (rows.held(np.array(m, np.int64)) for m in self.catalog.tags.examples(tag.id))
        if not len(yes):
            return None
        if current:
            return held.weights, held.bias, held.threshold, yes, no
        weights, bias, threshold = fit_with_threshold(
            vectors, vectors[rows.of(yes)], vectors[rows.of(no)]
        )
        return weights, bias, threshold, yes, no

    def _from_captions(self, model_id: str, fitted: list, rows: _Rows, vectors: np.ndarray):
        """Zero-shot tag name → threshold learnt from the captions the library knows
        (empty when it knows none). Every zero-shot tag the model has a scorer for counts
        toward the global threshold, not only those being fitted now."""
        typed = self.catalog.tags.captioned()
        known, known_vectors = self._captions_for(model_id) if self._captions_for else ([], None)
        typed_rows = rows.of(rows.held(np.fromiter(typed, np.int64, len(typed))))
        prompts = {t.name: f[0] for t, f in fitted if t.kind != "probe"}
        if not prompts or not (len(typed_rows) or known):
            return {}
        kinds = {t.name: t.kind for t in self.catalog.tags.all()}
        for name, held in self.catalog.tags.scorers(model_id):
            if kinds.get(name) == "prompt":
                prompts.setdefault(name, held.weights)
        # Every captioned image, and (described by the model) a sample of the rest.
        others = np.setdiff1d(np.arange(len(rows.ids)), typed_rows) if known else typed_rows[:0]
        if len(others) > CALIBRATION_SAMPLE:
            others = np.random.default_rng(0).choice(others, CALIBRATION_SAMPLE, replace=False)
        chosen = np.concatenate([typed_rows, others])
        texts = [typed[int(i)] for i in rows.ids[typed_rows]] + [None] * len(others)
        described = captions_of(vectors[chosen], texts, known, known_vectors)
        names = list(prompts)
        scores = np.stack([prompts[n] for n in names]) @ vectors[chosen].T
        cuts = calibration.thresholds(scores, calibration.weak_labels(names, described, scores))
        return {} if cuts is None else dict(zip(names, cuts.tolist()))

    def prompt_vector(self, model_id: str, prompts: tuple[str, ...]) -> np.ndarray:
        if not prompts:
            raise QueryError("a zero-shot tag needs a prompt")
        texts = self._encoder_for(model_id).encode_texts(phrasings(prompts))
        mean = texts.mean(axis=0)
        return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)


class _Rows:
    """Image ids → rows of the library's vector matrix (its ids come in any order)."""

    def __init__(self, ids: np.ndarray) -> None:
        self.ids = ids
        self._order = np.argsort(ids, kind="stable")
        self._sorted = ids[self._order]

    def held(self, wanted: np.ndarray) -> np.ndarray:
        """Those of `wanted` the library has a vector for."""
        at = np.searchsorted(self._sorted, wanted)
        found = at < len(self._sorted)
        found[found] = self._sorted[at[found]] == wanted[found]
        return wanted[found]

    def of(self, present: np.ndarray) -> np.ndarray:
        """Rows of ids the library has (see held)."""
        return self._order[np.searchsorted(self._sorted, present)]


def captions_of(
    vectors: np.ndarray,
    typed: list[str | None],
    known: list[str],
    known_vectors: np.ndarray | None,
) -> relevance.Described:
    """What the captions say of these images: each one's typed caption (`typed`, None
    where none), else the calibration.NEAREST known captions the model puts nearest it."""
    # -1, no caption: a typed row's stand-in, and every untyped row's when none is known.
    nearest = np.full((len(typed), max(1, min(calibration.NEAREST, len(known)))), -1, np.int64)
    untyped = np.array([i for i, t in enumerate(typed) if t is None], dtype=np.int64)
    if known and known_vectors is not None and len(untyped):
        nearest[untyped] = calibration.nearest_known(
            vectors[untyped], known_vectors, nearest.shape[1]
        )
    return relevance.Described.of(typed, known, nearest)


def index_vectors(store: IndexStore) -> Callable[[str], Library]:
    """A model's vectors from its index (the revision is the one it was built at: images
    added since count at the next application)."""

    def read(model_id: str) -> Library:
        manifest, index = store.get(model_id)
        return manifest.revision, *one_per_image(*index.stored())

    return read


def one_per_image(ids: np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An index's vectors with a video's frames (its id repeated) folded into their
    normalised mean: the video's own vector, as the catalog holds it."""
    unique, first, counts = np.unique(ids, return_index=True, return_counts=True)
    if len(unique) == len(ids):
        return ids, vectors
    folded = vectors[first]
    videos = counts > 1
    frames = np.isin(ids, unique[videos])
    order = np.argsort(ids[frames], kind="stable")
    runs = np.concatenate([[0], np.cumsum(counts[videos])[:-1]])
    sums = np.add.reduceat(vectors[frames][order], runs, axis=0)
    folded[videos] = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    return unique, folded
