"""The read path: a request in, ranked hits out, all from one model.

A query is a weighted sum of unit vectors (text, an example image, an indexed image),
renormalised; hits are its cosine top-k in that model's index.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from search.errors import NotFound, QueryError
from search.imageio import IMAGE_EXTENSIONS, load_image
from search.models.encoder import Encoder

if TYPE_CHECKING:  # they bring SQLAlchemy, which a cold query imports beside the model
    from search.catalog.store import Catalog
    from search.index.store import IndexStore

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
        }


@dataclass(frozen=True)
class SearchResult:
    model_id: str
    query: str
    hits: list[Hit] = field(default_factory=list)

    def to_json(self, hit_json: Callable[[Hit], dict] = Hit.to_json) -> dict:
        """`hit_json`: each hit's document (the web API's adds its URLs)."""
        return {
            "model_id": self.model_id,
            "query": self.query,
            "results": [hit_json(h) for h in self.hits],
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
    ) -> None:
        """`read_serving`: the serving model's id now (search.library.Library owns it)."""
        self.catalog = catalog
        self.store = store
        self._load_encoder = load_encoder
        self._read_serving = read_serving
        self.max_megapixels = max_megapixels
        self._encoders: dict[str, Encoder] = {}
        self._encoder_lock = threading.Lock()

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
        model_id = self.serving_model()
        vector = self.query_vector(req, model_id)
        allowed = None
        if req.path_prefix or req.after or req.before:
            allowed = self.catalog.filter_ids(req.path_prefix, req.after, req.before)
        exclude = {req.like} if req.like is not None else set()
        hits = self._rank(model_id, vector, req.offset + req.k, allowed, exclude)
        if req.sort == "date":
            # Date order applies to the best offset+k matches, not to the whole library.
            hits.sort(key=lambda h: h.date, reverse=True)
        return SearchResult(model_id, req.describe(), hits[req.offset : req.offset + req.k])

    def similar(self, image_id: int, k: int = 20) -> SearchResult:
        return self.search(SearchRequest(like=image_id, k=k))

    def _rank(
        self,
        model_id: str,
        vector: np.ndarray,
        want: int,
        allowed: np.ndarray | None,
        exclude: set[int],
    ) -> list[Hit]:
        _, index = self.store.get(model_id)
        # The index may be a snapshot a little behind the catalog: ask for a few more in
        # case some hits were deleted since, and drop those rather than point elsewhere.
        scores, ids = index.search(vector, want + len(exclude) + 8, allowed)
        metas = self.catalog.images(int(i) for i in ids if int(i) not in exclude)
        hits = [
            Hit(m.id, m.path, float(s), m.width, m.height, m.taken_at, m.date)
            for s, i in zip(scores, ids)
            if (m := metas.get(int(i))) is not None
        ]
        return hits[:want]


def _looks_like_image_file(term: str) -> bool:
    path = Path(term).expanduser()
    return path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()
