"""Server-rendered pages: search, image detail (with captions), status, failures.

Everything works without JavaScript; static/app.js adds drag-and-drop, infinite scroll and
keyboard shortcuts on top.
"""

from __future__ import annotations

import base64
import io
import os

from flask import Blueprint, redirect, render_template, request, url_for

from search.codecs import RAW_EXTENSIONS
from search.errors import ImageDecodeError, NotFound, QueryError
from search.imageio import jpeg_thumbnail
from search.query.searcher import SearchResult
from search.tags.listing import tag_rows
from webui.api import caption_text, image_tags, library
from webui.files import frame_time
from webui.search_params import MAX_OFFSET, SearchParams, marked, uploaded_image
from webui.tags import description

bp = Blueprint("pages", __name__)

PAGE_SIZE = 48
PREVIEW_SIDE = 160
# The detail page shows these through their (upright JPEG) thumbnail: browsers cannot
# decode TIFF, HEIC or RAW. AVIF they show, turned by its "irot" box as Pillow reads it.
_NOT_DISPLAYABLE = (".tif", ".tiff", ".heic", ".heif", *RAW_EXTENSIONS)


def _library_state() -> dict:
    """What the search page says about the library: empty, being indexed, its folders."""
    lib = library()
    return {
        "image_count": lib.catalog.image_count(),
        "serving_model": lib.serving_model,
        "indexing": lib.lock.held_elsewhere(),
        "roots": [r.path.rstrip(os.sep) + os.sep for r in lib.catalog.roots()],
        "tags": tag_rows(lib.catalog, lib.serving_model),
    }


def _render_search(
    params: SearchParams,
    result: SearchResult | None = None,
    *,
    error: str | None = None,
    preview: str | None = None,
    status: int = 200,
):
    pages = {}
    if result is not None and preview is None:  # an upload cannot be paged by URL
        if len(result.hits) == params.k and params.offset + params.k <= MAX_OFFSET:
            following = params.query_args(PAGE_SIZE, offset=params.offset + params.k)
            pages["next"] = url_for("pages.search", **following)
            # The API does not fold copies unless told: the page's default is said out loud.
            folded = params.collapse or "1"
            pages["more"] = url_for(
                "api.search", **params.query_args(0, offset=following["offset"], collapse=folded)
            )
        if params.offset > 0:
            earlier = max(0, params.offset - params.k)
            pages["prev"] = url_for("pages.search", **params.query_args(PAGE_SIZE, offset=earlier))
    body = render_template(
        "search.html",
        params=params,
        result=result,
        error=error,
        preview=preview,
        pages=pages,
        page_size=PAGE_SIZE,
        state=_library_state(),
    )
    return body, status


def _preview(buffer: io.BytesIO, max_megapixels: float) -> str:
    """A small data: URL of the query image (this also refuses a bomb before the model
    loads). The buffer is rewound for the search."""
    data = jpeg_thumbnail(buffer, PREVIEW_SIDE, max_megapixels=max_megapixels)
    buffer.seek(0)
    return "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")


@bp.get("/")
def search():
    try:
        params = SearchParams.parse(request.args, default_k=PAGE_SIZE)
    except QueryError as exc:
        return _render_search(SearchParams(k=PAGE_SIZE), error=str(exc), status=400)
    lib = library()
    if params.like is not None:
        lib.catalog.image(params.like)  # an unknown id is a 404 page, not a bad query
    if not params.has_query or lib.serving_model is None:
        return _render_search(params)
    try:
        result = lib.searcher.search(params.request(collapse_by_default=True))
    except QueryError as exc:
        return _render_search(params, error=str(exc), status=400)
    return _render_search(params, result)


@bp.post("/")
def search_by_image():
    lib = library()
    try:
        params = SearchParams.parse(request.form, default_k=PAGE_SIZE)
        image = uploaded_image(request.files.get("image"))
        preview = _preview(image, lib.settings.max_megapixels)
    except QueryError as exc:
        return _render_search(SearchParams(k=PAGE_SIZE), error=str(exc), status=400)
    except ImageDecodeError as exc:
        message = f"The image was refused: {exc.reason}."
        return _render_search(SearchParams(k=PAGE_SIZE), error=message, status=400)
    if lib.serving_model is None:
        return _render_search(params)
    try:
        result = lib.searcher.search(params.request(image, collapse_by_default=True))
    except QueryError as exc:
        return _render_search(params, error=str(exc), status=400)
    return _render_search(params, result, preview=preview)


@bp.get("/images/<int:image_id>")
def image(image_id: int):
    lib = library()
    meta = lib.catalog.image(image_id)
    route = "files.thumbnail" if meta.path.lower().endswith(_NOT_DISPLAYABLE) else "files.original"
    shown = url_for(route, image_id=image_id)
    # A video plays from the moment a search found (its best frame), poster at that frame.
    t = (frame_time(request.args.get("t")) or 0.0) if meta.kind == "video" else None
    model_id = lib.serving_model
    try:
        described = description(lib, image_id) if model_id is not None else None
    except NotFound:  # not embedded by the serving model yet
        described = None
    return render_template(
        "image.html",
        image=meta,
        shown_url=shown,
        t=t,
        text_lines=lib.catalog.texts.lines(image_id),
        captions=lib.catalog.captions(image_id),
        tags=image_tags(lib, image_id),
        described=described,
        all_tags=tag_rows(lib.catalog, model_id),
    )


@bp.post("/images/<int:image_id>/captions")
def add_caption(image_id: int):
    library().catalog.add_caption(image_id, caption_text(request.form.get("text")))
    # Post/redirect/get: reloading the page does not add the caption twice.
    return redirect(url_for("pages.image", image_id=image_id, _anchor="captions"), code=303)


@bp.get("/status")
def status():
    return render_template("status.html", status=library().status())


@bp.get("/failures")
def failures():
    return render_template("failures.html", failures=library().catalog.failures())


bp.add_app_template_filter(marked, "marked")


@bp.app_template_filter("basename")
def basename(path: str) -> str:
    return os.path.basename(path)


@bp.app_template_filter("filesize")
def filesize(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    value = size / 1024
    for unit in ("KB", "MB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


@bp.app_template_filter("clock")
def clock(seconds: float | None) -> str:
    """Seconds as m:ss, or h:mm:ss past an hour (static/app.js writes them alike)."""
    s = int(seconds or 0)
    h, m = divmod(s // 60, 60)
    return f"{h}:{m:02d}:{s % 60:02d}" if h else f"{m}:{s % 60:02d}"
