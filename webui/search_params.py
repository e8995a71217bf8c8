"""Search parameters from a query string or form, shared by the pages and the JSON API.

Bad values raise QueryError (a 400); bounds keep one request from asking FAISS and the
catalog for millions of rows.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace

from flask import url_for
from markupsafe import Markup, escape
from werkzeug.datastructures import FileStorage
from werkzeug.utils import secure_filename

from search.catalog.lexical import MARK_END, MARK_START
from search.errors import QueryError
from search.query.searcher import MODES, Hit, SearchRequest, folder_prefix, parse_date
from search.tags.vocabulary import tag_name

MAX_K = 200
MAX_OFFSET = 10_000
MAX_QUERY_CHARS = 1_000
MAX_TAGS = 20
MAX_IMAGE_ID = 2**63 - 1  # SQLite's INTEGER range; beyond it the driver overflows


@dataclass(frozen=True)
class SearchParams:
    """What a search URL says; the fields are its query-string names."""

    q: str = ""
    like: int | None = None
    k: int = 20
    offset: int = 0
    path_prefix: str = ""
    after: str = ""
    before: str = ""
    sort: str = "score"
    mode: str = "hybrid"
    # "1" only relevant hits, "0" all, "": the default (only relevant when sorted by date).
    relevant: str = ""
    tag: tuple[str, ...] = ()  # every one must hold
    # "1" one hit per photo (copies and edits folded into it), "0" every file, "": the
    # caller's default (the pages fold, the JSON API does not).
    collapse: str = ""
    teach: str = ""  # the pages: a tag each result can be marked as being, or not

    @classmethod
    def parse(cls, values: Mapping[str, str], default_k: int = 20) -> SearchParams:
        q = values.get("q", "").strip()
        if len(q) > MAX_QUERY_CHARS:
            raise QueryError(f"the query is longer than {MAX_QUERY_CHARS} characters")
        like = values.get("like", "").strip()
        return cls(
            q=q,
            like=_int("like", like, 1, MAX_IMAGE_ID) if like else None,
            k=_int("k", values.get("k", ""), 1, MAX_K, default_k),
            offset=_int("offset", values.get("offset", ""), 0, MAX_OFFSET, 0),
            path_prefix=values.get("path_prefix", "").strip(),
            after=values.get("after", "").strip(),
            before=values.get("before", "").strip(),
            sort=values.get("sort", "").strip() or "score",
            mode=_choice("mode", values.get("mode", ""), MODES),
            relevant=_choice("relevant", values.get("relevant", ""), ("1", "0"), ""),
            tag=_tags(values),
            collapse=_choice("collapse", values.get("collapse", ""), ("1", "0"), ""),
            teach=tag_name(values["teach"]) if values.get("teach", "").strip() else "",
        )

    @property
    def has_query(self) -> bool:
        return bool(self.q) or self.like is not None

    @property
    def has_filters(self) -> bool:
        return bool(
            self.path_prefix
            or self.after
            or self.before
            or self.sort != "score"
            or self.mode != "hybrid"
            or self.relevant
            or self.tag
            or self.collapse
        )

    def request(
        self, image: io.BytesIO | None = None, *, collapse_by_default: bool = False
    ) -> SearchRequest:
        return SearchRequest(
            text=self.q or None,
            image=image,
            like=self.like,
            k=self.k,
            offset=self.offset,
            path_prefix=folder_prefix(self.path_prefix) or None,
            after=parse_date(self.after) if self.after else None,
            before=parse_date(self.before) if self.before else None,
            sort=self.sort,
            mode=self.mode,
            relevant=None if not self.relevant else self.relevant == "1",
            tags=self.tag,
            collapse=self.collapse == "1" or (not self.collapse and collapse_by_default),
        )

    def query_args(self, default_k: int, **changes: object) -> dict[str, object]:
        """Non-default values only, so URLs stay short and bookmarkable."""
        defaults = asdict(SearchParams(k=default_k))
        current = asdict(replace(self, **{**changes, "tag": tuple(changes.get("tag", self.tag))}))
        return {name: value for name, value in current.items() if value != defaults[name]}


def _tags(values: Mapping[str, str]) -> tuple[str, ...]:
    """The repeatable `tag=` values (a MultiDict's list; a plain mapping's one value)."""
    raw = values.getlist("tag") if hasattr(values, "getlist") else [values.get("tag", "")]
    names = tuple(dict.fromkeys(tag_name(r) for r in raw if r.strip()))
    if len(names) > MAX_TAGS:
        raise QueryError(f"at most {MAX_TAGS} tags at once")
    return names


def _int(name: str, raw: str, low: int, high: int, default: int | None = None) -> int:
    raw = raw.strip()
    if not raw and default is not None:
        return default
    if not raw.isascii() or not raw.isdigit():
        raise QueryError(f"{name} must be a whole number, not {raw!r}")
    value = int(raw)
    if not low <= value <= high:
        raise QueryError(f"{name} must be between {low} and {high}")
    return value


def _choice(name: str, raw: str, allowed: tuple[str, ...], default: str | None = None) -> str:
    raw = raw.strip()
    if not raw:
        return allowed[0] if default is None else default
    if raw not in allowed:
        raise QueryError(f"{name} must be one of {', '.join(allowed)}")
    return raw


def uploaded_image(upload: FileStorage | None) -> io.BytesIO:
    """The uploaded query image in memory (its size is already capped by the request
    limit), named after the upload so the query reads 'image:beach.jpg'."""
    if upload is None or not upload.filename:
        raise QueryError("no image uploaded: send it as the multipart field 'image'")
    data = upload.read()
    if not data:
        raise QueryError("the uploaded image is empty")
    buffer = io.BytesIO(data)
    buffer.name = secure_filename(upload.filename) or "upload"
    return buffer


def marked(text: str) -> Markup:
    """A field's text as HTML, its matched words in <mark> (everything else escaped)."""
    html = str(escape(text))
    return Markup(html.replace(MARK_START, "<mark>").replace(MARK_END, "</mark>"))


def hit_json(hit: Hit) -> dict:
    return {
        **hit.to_json(),
        # Why it matched: each field's text as HTML, matched words in <mark>, the rest
        # escaped (as search engines' highlight responses are).
        "highlights": {name: str(marked(text)) for name, text in hit.highlights.items()},
        # A video's thumbnail and page show it at its best frame for the query.
        "thumb_url": url_for("files.thumbnail", image_id=hit.id, t=hit.t),
        "file_url": url_for("files.original", image_id=hit.id),
        "page_url": url_for("pages.image", image_id=hit.id, t=hit.t),
    }
