"""Fitting tags to a model and applying them to the library, from stored vectors only.

A tag's scorer is linear in a model's image space: a zero-shot tag's is its prompts'
text embedding (averaged over phrasings, search.tags.vocabulary), a taught tag's a probe
fitted on marked examples (search.tags.probe). Its threshold is calibrated per tag, from
that tag's own scores over the library, with the cutoff searches use
(search.query.relevance: two Gaussians, the images that hold the tag and the rest): one
global number cannot suit "sunset" and "red" alike. Marked examples always win over the
threshold. Every result is stored under the model it was computed with, so a model
switch never shows a tag computed from another model's vectors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from search.catalog.records import TagInfo, TagScore
from search.errors import NotFound, QueryError
from search.models.encoder import Encoder
from search.query import relevance
from search.tags.probe import fit_probe
from search.tags.vocabulary import phrasings

if TYPE_CHECKING:  # the catalog brings SQLAlchemy
    from search.catalog.store import Catalog


@dataclass(frozen=True)
class Applied:
    name: str
    kind: str
    count: int
    threshold: float


class Tagger:
    def __init__(self, catalog: Catalog, encoder_for: Callable[[str], Encoder]) -> None:
        """`encoder_for`: a model id's encoder, loaded only when a prompt needs embedding."""
        self.catalog = catalog
        self._encoder_for = encoder_for

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
        try:
            self.catalog.tags.get(name)
        except NotFound:
            self.catalog.tags.define(name, "probe", ())
        tag = self.catalog.tags.teach(name, yes, no)
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
        revision = self.catalog.model_revision(model_id)
        ids, vectors = self.catalog.vectors(model_id)
        applied = []
        for tag in todo:
            fitted = self._fit(tag, model_id, ids, vectors)
            if fitted is None:
                continue
            weights, bias, yes, no = fitted
            scores = (vectors @ weights + bias) if len(ids) else np.zeros(0, np.float32)
            threshold = relevance.cutoff(scores) if len(scores) else 0.0
            held = scores >= threshold
            held[np.isin(ids, yes)] = True
            held[np.isin(ids, no)] = False
            score = TagScore(weights, bias, threshold, tag.version, revision)
            if self.catalog.tags.apply(tag.id, model_id, score, ids[held], scores[held]):
                applied.append(Applied(tag.name, tag.kind, int(held.sum()), threshold))
        return applied

    def _fit(self, tag: TagInfo, model_id: str, ids: np.ndarray, vectors: np.ndarray):
        """(weights, bias, yes ids, no ids), or None when there is nothing to fit from."""
        if tag.kind == "probe":
            yes, no = self.catalog.tags.examples(tag.id)
            row = {i: r for r, i in enumerate(ids.tolist())}
            yes = [i for i in yes if i in row]
            no = [i for i in no if i in row]
            if not yes:
                return None
            weights, bias = fit_probe(
                vectors, vectors[[row[i] for i in yes]], vectors[[row[i] for i in no]]
            )
            return weights, bias, np.array(yes), np.array(no)
        held = self.catalog.tags.scorer(tag.id, model_id)
        if held is not None and held.tag_version == tag.version:
            weights = held.weights  # the prompts' embedding: the same until they change
        else:
            weights = self.prompt_vector(model_id, tag.prompts)
        return weights, 0.0, np.zeros(0, np.int64), np.zeros(0, np.int64)

    def prompt_vector(self, model_id: str, prompts: tuple[str, ...]) -> np.ndarray:
        if not prompts:
            raise QueryError("a zero-shot tag needs a prompt")
        texts = self._encoder_for(model_id).encode_texts(phrasings(prompts))
        mean = texts.mean(axis=0)
        return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)
