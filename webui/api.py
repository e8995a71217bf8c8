"""The JSON API (DESIGN.md, "HTTP"): search, images, similar, captions, status (tags:
webui.tags)."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, jsonify, request, url_for

from search.catalog.records import CaptionInfo, ImageMeta
from search.library import Library
from webui.search_params import SearchParams, hit_json, uploaded_image
from webui.security import csrf_token

bp = Blueprint("api", __name__, url_prefix="/api")

MAX_CAPTION_CHARS = 1_000


def library() -> Library:
    return current_app.extensions["imgsearch.library"]


def check_searchable(lib: Library, like: int | None = None) -> None:
    """404 when `like` names no image (a missing thing, not a malformed query); 409 when
    nothing is indexed yet (the request is fine, the library is not ready)."""
    if like is not None:
        lib.catalog.image(like)
    if lib.serving_model is None:
        abort(409, "nothing is indexed yet: run `imgsearch index FOLDER` first")


def image_json(meta: ImageMeta, captions: list[CaptionInfo], tags: list[str]) -> dict:
    return {
        "id": meta.id,
        "path": meta.path,
        "width": meta.width,
        "height": meta.height,
        "size": meta.size,
        "taken_at": meta.taken_at.isoformat() if meta.taken_at else None,
        "date": meta.date.isoformat(),
        "kind": meta.kind,
        "duration": meta.duration,  # seconds, for a video; None for a photo
        "thumb_url": url_for("files.thumbnail", image_id=meta.id),
        "file_url": url_for("files.original", image_id=meta.id),
        "page_url": url_for("pages.image", image_id=meta.id),
        "similar_url": url_for("api.similar", image_id=meta.id),
        "captions": [caption_json(c) for c in captions],
        "tags": tags,  # by the serving model
    }


def caption_json(caption: CaptionInfo) -> dict:
    return {
        "id": caption.id,
        "image_id": caption.image_id,
        "text": caption.text,
        "source": caption.source,
        "created_at": caption.created_at.isoformat(),
    }


def caption_text(raw: object) -> str:
    """A caption as stored: trimmed, non-empty, bounded (it becomes a training pair)."""
    if not isinstance(raw, str) or not raw.strip():
        abort(400, "a caption needs some text")
    text = " ".join(raw.split())
    if len(text) > MAX_CAPTION_CHARS:
        abort(400, f"a caption may be at most {MAX_CAPTION_CHARS} characters")
    return text


@bp.get("/search")
def search():
    params = SearchParams.parse(request.args)
    if not params.has_query:
        abort(400, "empty query: give q (text) or like (an image id)")
    lib = library()
    check_searchable(lib, params.like)
    return jsonify(lib.searcher.search(params.request()).to_json(hit_json))


@bp.post("/search")
def search_by_image():
    params = SearchParams.parse(request.values)
    image = uploaded_image(request.files.get("image"))
    lib = library()
    check_searchable(lib, params.like)
    return jsonify(lib.searcher.search(params.request(image)).to_json(hit_json))


@bp.get("/images/<int:image_id>")
def image(image_id: int):
    lib = library()
    meta = lib.catalog.image(image_id)
    doc = image_json(meta, lib.catalog.captions(image_id), image_tags(lib, image_id))
    # The text read in it (DESIGN.md, wave 2): its lines, null when it was never read.
    lines = lib.catalog.texts.lines(image_id)
    doc["text"] = None if lines is None else "\n".join(line.text for line in lines)
    doc["text_lines"] = [
        {"text": line.text, "box": list(line.box), "confidence": line.confidence}
        for line in lines or []
    ]
    return jsonify(doc)


def image_tags(lib: Library, image_id: int) -> list[str]:
    model_id = lib.serving_model
    return [] if model_id is None else lib.catalog.image_tags([image_id], model_id)[image_id]


@bp.get("/images/<int:image_id>/similar")
def similar(image_id: int):
    params = SearchParams.parse({"k": request.args.get("k", "")})
    lib = library()
    check_searchable(lib, image_id)
    return jsonify(lib.searcher.similar(image_id, params.k).to_json(hit_json))


@bp.post("/images/<int:image_id>/captions")
def add_caption(image_id: int):
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        abort(400, 'send JSON like {"text": "a dog asleep on a red sofa"}')
    caption = library().catalog.add_caption(image_id, caption_text(body.get("text")))
    return jsonify(caption_json(caption)), 201


@bp.get("/csrf-token")
def token():
    """For scripts: POSTs need this in X-CSRF-Token. Other sites cannot read it (no CORS,
    and a rebinding DNS name fails the Host check)."""
    return jsonify({"csrf_token": csrf_token()})


@bp.get("/status")
def status():
    # "warm_up": whether the query model is loaded yet (webui.warmup).
    warm_up = current_app.extensions["imgsearch.warmup"].status()
    return jsonify({**library().status().to_json(), "warm_up": warm_up})


@bp.get("/failures")
def failures():
    return jsonify([f.to_json() for f in library().catalog.failures()])
