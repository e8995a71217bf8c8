"""The read path: a request in, ranked hits out, all from one model.

A query is a weighted sum of unit vectors (text, an example image, an indexed image),
renormalised; its cosine ranking in that model's index is the semantic side. The words of
the query looked up in the lexical index (file and folder names, captions, embedded
keywords) are the lexical side; hybrid search fuses the two rankings. Each hit says whether
it is relevant: above the query's own cutoff (search.query.relevance) or holding every word.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from search.catalog import lexical
from search.errors import NotFound, QueryError
from search.imageio import IMAGE_EXTENSIONS, load_image
from search.models.encoder import Encoder
from search.query import relevance

if TYPE_CHECKING:  # they bring SQLAlchemy, which a cold query imports beside the model
    from search.catalog.store import Catalog
    from search.index.store import IndexStore

# model id, image ids, their vectors → what the library's captions say of those images.
Describer = Callable[[str, np.ndarray, np.ndarray], "relevance.Described | None"]

MODES = ("hybrid", "semantic", "text")
# Reciprocal-rank fusion: a hit's fused score is the sum over rankings of w / (K + rank).
# The lexical ranking weighs double: an image whose folder, caption or keywords hold every
# word of the query is strong evidence, and weight 2 keeps up to about K such images ahead
# of the best image that only looks right (bench/hybrid_bench.py measures both sides).
RRF_K, LEXICAL_WEIGHT = 60, 2.0
# How deep each ranking is read before fusing, beyond the page asked for.
FUSION_DEPTH = 100
# A relevant set read in full (--relevant, --sort date) holds at most this many word matches.
LEXICAL_LIMIT = 10_000
# Words matching more images than this are ranked by cosine among their matches, not bm25.
BROAD_MATCHES = 2_000
# Hits read beyond the page, in case some were deleted since the index was built.
SPARE = 8
COLLAPSE_DEPTH = 4
# Library vectors a query is scored against to place its cutoff.
CUTOFF_SAMPLE = 4096

_WEIGHT = re.compile(r"^([+-]?\d+(?:\.\d*)?|[+-]?\.\d+):(.+)$", re.S)


def parse_weighted(raw: str) -> tuple[float, str]:
    """'2:cat' → (2.0, 'cat'); 'cat' → (1.0, 'cat'); 'a:b' stays text (no number)."""
    m = _WEIGHT.match(raw.strip())
    return (float(m.group(1)), m.group(2).strip()) if m else (1.0, raw.strip())


def parse_date(raw: str) -> datetime:
    """YYYY, YYYY-MM, YYYY-MM-DD or an ISO datetime; a partial date means its first moment
    (--after is inclusive, --before exclusive)."""
    raw = raw.strip()
    try:
        if re.fullmatch(r"\d{4}", raw):
            return datetime(int(raw), 1, 1)
        if re.fullmatch(r"\d{4}-\d{1,2}", raw):
            y, m = map(int, raw.split("-"))
            return datetime(y, m, 1)
        return datetime.fromisoformat(raw).replace(tzinfo=None)
    except ValueError as exc:
        raise QueryError(f"{raw!r} is not a date (use YYYY, YYYY-MM or YYYY-MM-DD)") from exc


def folder_prefix(prefix: str) -> str:
    """The catalog path prefix a typed path prefix means, on the command line and in the
    web UI alike. A folder that exists ('~/photos/2019', or 'photos/2019' from the working
    directory) means that folder: absolute, as the catalog stores paths, and closed with a
    separator so '/photos/2019-old' is not inside it. Anything else is a literal prefix
    ('/photos/IMG_')."""
    path = Path(prefix).expanduser()
    return os.path.join(os.path.abspath(path), "") if prefix and path.is_dir() else prefix


@dataclass(frozen=True)
class SearchRequest:
    text: str | None = None
    image: str | Path | BinaryIO | None = None
    like: int | None = None
    add: tuple[str, ...] = ()
    sub: tuple[str, ...] = ()
    k: int = 20
    offset: int = 0
    path_prefix: str | None = None
    after: datetime | None = None
    before: datetime | None = None
    sort: str = "score"
    mode: str = "hybrid"
    # Only the relevant hits; None: only with --sort date (the relevant set by date).
    relevant: bool | None = None
    tags: tuple[str, ...] = ()  # only images holding every one of these tags
    # One hit per photo: the best-ranked of each group of exact copies and edits stands
    # for the rest (search.duplicates), which it lists.
    collapse: bool = False

    @property
    def reach(self) -> int:
        """How many ranked candidates the page needs: collapsing drops the copies and
        edits below their best, so it reads deeper to fill the page."""
        return (self.offset + self.k) * (COLLAPSE_DEPTH if self.collapse else 1)

    @property
    def relevant_only(self) -> bool:
        return self.sort == "date" if self.relevant is None else self.relevant

    def text_alone(self) -> str | None:
        """The query's text when nothing else (terms, an image, a photo) moves its vector."""
        if self.add or self.sub or self.image is not None or self.like is not None:
            return None
        return self.text.strip() if self.text and self.text.strip() else None

    def words(self) -> list[str]:
        """The words the lexical side looks up: the query's and the --add terms' (not
        the weights, not image files)."""
        added = [parse_weighted(raw)[1] for raw in self.add]
        texts = [self.text or ""] + [t for t in added if not _looks_like_image_file(t)]
        return lexical.terms(" ".join(texts))

    def describe(self) -> str:
        parts = [self.text] if self.text else []
        if self.image is not None:
            parts.append(f"image:{getattr(self.image, 'name', self.image)}")
        if self.like is not None:
            parts.append(f"like:{self.like}")
        parts += [f"+{t}" for t in self.add] + [f"-{t}" for t in self.sub]
        return " ".join(parts)


@dataclass(frozen=True)
class Hit:
    id: int
    path: str
    score: float
    width: int
    height: int
    taken_at: datetime | None
    date: datetime
    relevant: bool = False
    matched: tuple[str, ...] = ()  # lexical fields holding the query's words
    # Those fields' text, the matched words between lexical.MARK_START and MARK_END.
    highlights: dict[str, str] = field(default_factory=dict, compare=False)
    tags: tuple[str, ...] = ()  # the image's tags by the serving model
    duplicates: tuple[int, ...] = ()  # with collapse: the copies and edits it stands for
    kind: str = "image"  # or "video"
    t: float | None = None  # a video's best frame for the query, in seconds from its start

    def to_json(self) -> dict:
        """The keys `search --json` and the JSON API both give a hit (DESIGN.md)."""
        return {
            "id": self.id,
            "path": self.path,
            "score": round(self.score, 6),
            "width": self.width,
            "height": self.height,
            "taken_at": self.taken_at.isoformat() if self.taken_at else None,
            "date": self.date.isoformat(),
            "relevant": self.relevant,
            "matched": list(self.matched),
            "tags": list(self.tags),
            "duplicates": list(self.duplicates),
            "kind": self.kind,
            "t": None if self.t is None else round(self.t, 3),
        }


@dataclass(frozen=True)
class SearchResult:
    model_id: str
    query: str
    hits: list[Hit] = field(default_factory=list)
    # How many relevant hits there are in all, when only relevant ones were asked for.
    relevant_count: int | None = None

    def to_json(self, hit_json: Callable[[Hit], dict] = Hit.to_json) -> dict:
        """`hit_json`: each hit's document (the web API's adds its URLs)."""
        return {
            "model_id": self.model_id,
            "query": self.query,
            "results": [hit_json(h) for h in self.hits],
            "relevant_count": self.relevant_count,
        }


EncoderLoader = Callable[[str], Encoder]


class Searcher:
    """Answers requests with the serving model. Safe to share between threads."""

    def __init__(
        self,
        catalog: Catalog,
        store: IndexStore,
        load_encoder: EncoderLoader,
        read_serving: Callable[[], str | None],
        *,
        max_megapixels: float = 100.0,
        describe: Describer | None = None,
    ) -> None:
        """`read_serving`: the serving model's id now (search.library.Library owns it).
        `describe(model_id, ids, vectors)`: what the library's captions say of those
        images (relevance.Described), None when it knows no caption."""
        self.catalog = catalog
        self.store = store
        self._load_encoder = load_encoder
        self._read_serving = read_serving
        self.max_megapixels = max_megapixels
        self._encoders: dict[str, Encoder] = {}
        self._describe = describe
        self._encoder_lock = threading.Lock()  # also guards _references
        # model id → (the index sampled, the captions' version, the reference): see _cutoff.
        self._references: dict[str, tuple[object, object, relevance.Reference]] = {}

    def serving_model(self) -> str:
        model_id = self._read_serving()
        if model_id is None:
            raise QueryError("nothing is indexed yet: run `imgsearch index FOLDER` first")
        return model_id

    def encoder(self, model_id: str) -> Encoder:
        with self._encoder_lock:
            if model_id not in self._encoders:
                self._encoders[model_id] = self._load_encoder(model_id)
            return self._encoders[model_id]

    def query_vector(self, req: SearchRequest, model_id: str) -> np.ndarray:
        weighted: list[tuple[float, np.ndarray]] = []
        texts: list[tuple[float, str]] = []
        if req.text and req.text.strip():
            texts.append((1.0, req.text.strip()))
        for sign, terms in ((1.0, req.add), (-1.0, req.sub)):
            for raw in terms:
                weight, term = parse_weighted(raw)
                if not term:
                    raise QueryError(f"empty query term in {raw!r}")
                if _looks_like_image_file(term):
                    weighted.append((sign * weight, self._image_vector(term, model_id)))
                else:
                    texts.append((sign * weight, term))
        if req.image is not None:
            weighted.append((1.0, self._image_vector(req.image, model_id)))
        if req.like is not None:
            try:
                weighted.append((1.0, self.catalog.vector_of(req.like, model_id)))
            except NotFound as exc:
                raise QueryError(f"--like {req.like}: {exc}") from exc
        if texts:
            vecs = self.encoder(model_id).encode_texts([t for _, t in texts])
            weighted += [(w, v) for (w, _), v in zip(texts, vecs)]
        if not weighted:
            raise QueryError("empty query: give text, an image, or an indexed image id")
        combined = np.sum([w * v for w, v in weighted], axis=0).astype(np.float32)
        norm = float(np.linalg.norm(combined))
        if norm < 1e-6:
            raise QueryError("the query terms cancel each other out")
        return combined / norm

    def _image_vector(self, source: str | Path | BinaryIO, model_id: str) -> np.ndarray:
        encoder = self.encoder(model_id)
        decoded = load_image(
            source, max_megapixels=self.max_megapixels, min_side=encoder.image_size
        )
        return encoder.encode_images([decoded.image])[0]

    def search(self, req: SearchRequest) -> SearchResult:
        if req.k < 1 or req.offset < 0:
            raise QueryError("k must be at least 1 and offset at least 0")
        if req.sort not in ("score", "date"):
            raise QueryError("sort must be 'score' or 'date'")
        if req.mode not in MODES:
            raise QueryError(f"mode must be one of {', '.join(MODES)}, not {req.mode!r}")
        model_id = self.serving_model()
        words = [] if req.mode == "semantic" else req.words()
        if req.mode == "text" and not words:
            if not (req.text or req.add):
                raise QueryError("empty query: give words to look for")
            return SearchResult(model_id, req.describe(), [], 0 if req.relevant_only else None)
        allowed = None
        if req.path_prefix or req.after or req.before:
            allowed = self.catalog.filter_ids(req.path_prefix, req.after, req.before)
        if req.tags:
            tagged = self.catalog.tagged_ids(req.tags, model_id)
            allowed = tagged if allowed is None else np.intersect1d(allowed, tagged)
        ranked, vector = self._rank(req, model_id, words, allowed)
        if req.relevant_only:
            ranked = [c for c in ranked if c.relevant]
        else:
            # Only the best offset+k count (a few spare: see below); date order then
            # applies to those, not to the library.
            ranked = ranked[: req.reach + SPARE]
        metas = self.catalog.images(c.id for c in ranked)
        # The index may be a snapshot a little behind the catalog: a hit deleted since is
        # dropped rather than pointed elsewhere.
        ranked = [c for c in ranked if c.id in metas]
        stands_for: dict[int, tuple[int, ...]] = {}
        if req.collapse:
            ranked, stands_for = self._collapsed(ranked)
        count = len(ranked) if req.relevant_only else None
        if not req.relevant_only:
            ranked = ranked[: req.offset + req.k]
        if req.sort == "date":
            ranked.sort(key=lambda c: metas[c.id].date, reverse=True)
        page = ranked[req.offset : req.offset + req.k]
        holding = [c.id for c in page if c.words]
        matched = self.catalog.fields_matched(words, holding) if holding else {}
        tags = self.catalog.image_tags([c.id for c in page], model_id)
        videos = [c.id for c in page if metas[c.id].duration is not None]
        times = self._best_frames(videos, model_id, vector) if videos else {}
        hits = []
        for c in page:
            m, fields = metas[c.id], matched.get(c.id, {})
            hits.append(
                Hit(
                    m.id,
                    m.path,
                    c.score,
                    m.width,
                    m.height,
                    m.taken_at,
                    m.date,
                    c.relevant,
                    tuple(fields),
                    fields,
                    tuple(tags.get(c.id, ())),
                    stands_for.get(c.id, ()),
                    m.kind,
                    times.get(c.id),
                )
            )
        return SearchResult(model_id, req.describe(), hits, count)

    def _best_frames(
        self, videos: list[int], model_id: str, vector: np.ndarray | None
    ) -> dict[int, float]:
        """Each video's time to show: its frame closest to the query (the one that ranked
        it), or its first frame when the query has no vector (words only)."""
        found = self.catalog.frames_of(videos, model_id)
        return {
            i: f.times[int(np.argmax(f.vectors @ vector)) if vector is not None else 0]
            for i, f in found.items()
        }

    def _collapsed(
        self, ranked: list[_Candidate]
    ) -> tuple[list[_Candidate], dict[int, tuple[int, ...]]]:
        """The first-ranked image of each group of copies and edits, and for each such
        image the others of its group."""
        groups = self.catalog.photo_groups([c.id for c in ranked])
        kept, seen, stands_for = [], set(), {}
        for c in ranked:
            members = groups.get(c.id, (c.id,))
            if members in seen:
                continue
            seen.add(members)
            kept.append(c)
            if len(members) > 1:
                stands_for[c.id] = tuple(m for m in members if m != c.id)
        return kept, stands_for

    def similar(self, image_id: int, k: int = 20) -> SearchResult:
        return self.search(SearchRequest(like=image_id, k=k, mode="semantic"))

    def _rank(
        self, req: SearchRequest, model_id: str, words: list[str], allowed: np.ndarray | None
    ) -> tuple[list[_Candidate], np.ndarray | None]:
        """The candidates best first: enough of them for the page (a few spare, for hits
        deleted since the index was built), or all relevant ones when only those count;
        and the query's vector (None in text mode)."""
        exclude = {req.like} if req.like is not None else set()
        depth = req.reach + len(exclude) + SPARE
        whole = req.relevant_only  # the whole relevant set is read, not just a page
        lexical_hits: dict[int, float] = {}
        # A broad word (a city in a sixth of the folders) matches thousands of images alike:
        # bm25 tells them apart by field length only, at the cost of scoring every one, so
        # they are ordered by the query's cosine instead (hybrid needs the vector anyway;
        # text mode loads no model and keeps bm25).
        broad = (
            bool(words)
            and req.mode != "text"
            and self.catalog.lexical_count(words, BROAD_MATCHES + 1) > BROAD_MATCHES
        )
        if words and not broad:
            limit = LEXICAL_LIMIT if whole or allowed is not None else depth + FUSION_DEPTH
            permitted = None if allowed is None else set(allowed.tolist())
            lexical_hits = {
                h.id: -h.rank
                for h in self.catalog.lexical_search(words, limit)
                if h.id not in exclude and (permitted is None or h.id in permitted)
            }
        if req.mode == "text":
            return [_Candidate(i, s, True, True) for i, s in lexical_hits.items()], None

        vector = self.query_vector(req, model_id)
        _, index = self.store.get(model_id)
        if broad:
            matches = self.catalog.lexical_ids(words)
            lexical_hits = _by_cosine(
                index, vector, matches, None if whole else depth + FUSION_DEPTH, allowed, exclude
            )
        cut = self._cutoff(model_id, index, vector, req.text_alone())
        if words:
            depth += FUSION_DEPTH
        scores, ids = self._semantic(index, vector, depth, allowed, cut if whole else None)
        cosine = {i: s for i, s in zip(ids.tolist(), scores.tolist()) if i not in exclude}
        if req.mode == "semantic" or not lexical_hits:
            return [_Candidate(i, s, s >= cut, False) for i, s in cosine.items()], vector

        # Hybrid: reciprocal-rank fusion of the two rankings. A lexical hit the semantic
        # ranking did not reach still gets its own cosine, scored over just those ids (a
        # broad word's hits have theirs already).
        if broad:
            cosine.update((i, v) for i, v in lexical_hits.items() if v > -np.inf)
        unscored = np.array([i for i in lexical_hits if i not in cosine], dtype=np.int64)
        if len(unscored):
            extra_scores, extra_ids = index.search(vector, len(unscored), unscored)
            cosine.update(zip(extra_ids.tolist(), extra_scores.tolist()))
        fused = dict.fromkeys(cosine, 0.0)
        for rank, i in enumerate(sorted(cosine, key=cosine.__getitem__, reverse=True)):
            fused[i] = 1.0 / (RRF_K + rank + 1)
        for rank, i in enumerate(lexical_hits):
            fused[i] = fused.get(i, 0.0) + LEXICAL_WEIGHT / (RRF_K + rank + 1)
        order = sorted(fused, key=fused.__getitem__, reverse=True)
        ranked = [
            _Candidate(
                i,
                cosine.get(i, 0.0),
                i in lexical_hits or cosine.get(i, -1.0) >= cut,
                i in lexical_hits,
            )
            for i in order
        ]
        return ranked, vector

    def _semantic(self, index, vector, depth, allowed, cut):
        """(scores, ids) best first: the top `depth`, and with `cut` also every hit scoring
        at least that (read deeper until one falls below it or the index runs out)."""
        while True:
            scores, ids = index.search(vector, depth, allowed)
            if cut is None or len(ids) < depth or scores[-1] < cut:
                return scores, ids
            depth *= 4

    def _cutoff(self, model_id: str, index, vector: np.ndarray, text: str | None) -> float:
        """This query's relevance cutoff, from its scores against a spread of the library
        (and what its captions say of it, for a query of text alone)."""
        version = self.catalog.captions_version() if self._describe else None
        with self._encoder_lock:
            held = self._references.get(model_id)
            stale = held is None or held[0] is not index or held[1] != version
        if stale:
            # Built outside the lock: describing may embed captions with this searcher's
            # encoder, whose loading takes the same lock.
            ids, vectors = index.sample(CUTOFF_SAMPLE)
            described = None
            # The captions' cache unreadable or unwritable: the scores alone.
            with contextlib.suppress(OSError):
                described = self._describe(model_id, ids, vectors) if self._describe else None
            held = (index, version, relevance.Reference(vectors, described))
            with self._encoder_lock:
                self._references[model_id] = held
        return held[2].cutoff(vector, text)


def _by_cosine(index, vector, ids, depth, allowed, exclude) -> dict[int, float]:
    """`ids` (a broad word's matches) best first by cosine: the top `depth`, or with depth
    None all of them (those the index does not hold yet, not embedded, last)."""
    matches = np.array(ids, dtype=np.int64)
    keep = ~np.isin(matches, np.array(sorted(exclude), dtype=np.int64))
    if allowed is not None:
        keep &= np.isin(matches, allowed)
    matches = matches[keep]
    scores, found = index.search(vector, len(matches) if depth is None else depth, matches)
    ranked = dict(zip(found.tolist(), scores.tolist()))
    if depth is None:
        ranked.update((i, -np.inf) for i in matches.tolist() if i not in ranked)
    return ranked


@dataclass(frozen=True)
class _Candidate:
    id: int
    score: float
    relevant: bool
    words: bool  # holds every word of the query (a lexical hit)


def _looks_like_image_file(term: str) -> bool:
    path = Path(term).expanduser()
    return path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()
