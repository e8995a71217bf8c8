"""Tags on the web: the JSON API (list, add, teach, remove, describe an image) and the
form the image page and the result grid post to mark an image "is NAME / is not"."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, abort, jsonify, redirect, request, url_for

from search.library import Library
from search.tags.describe import describe, known_caption_vectors
from search.tags.listing import tag_rows
from search.tags.tagger import Tagger
from search.tags.vocabulary import tag_name
from webui.api import library

bp = Blueprint("tags", __name__)

MAX_PROMPTS = 20
MAX_PROMPT_CHARS = 300
MAX_MARKS = 1_000


def tagger(lib: Library) -> Tagger:
    # The searcher's encoder: loaded once per model and shared with the searches.
    return lib.tagger(lib.searcher.encoder)


def known_captions_of(lib: Library):
    return known_caption_vectors(
        lib.catalog, lib.settings.models_dir, lib.settings.cache_dir, lib.searcher.encoder
    )


def _row(lib: Library, name: str) -> dict:
    return next(r for r in tag_rows(lib.catalog, lib.serving_model) if r["name"] == name)


@bp.get("/api/tags")
def list_tags():
    lib = library()
    return jsonify({"tags": tag_rows(lib.catalog, lib.serving_model)})


@bp.post("/api/tags")
def add_tag():
    """{"name": "sunset", "prompts": ["a sunset over the sea"]} (prompts optional)."""
    body = _json_body('send JSON like {"name": "sunset", "prompts": ["a sunset"]}')
    name = tag_name(_text(body.get("name"), "name", 200))
    raw = body.get("prompts") or [name]
    if not isinstance(raw, list) or len(raw) > MAX_PROMPTS:
        abort(400, f"prompts must be a list of at most {MAX_PROMPTS} texts")
    prompts = tuple(_text(p, "a prompt", MAX_PROMPT_CHARS) for p in raw)
    lib = library()
    tagger(lib).add(lib.serving_model, {name: prompts})
    return jsonify(_row(lib, name)), 201


@bp.post("/api/tags/<name>/examples")
def teach_tag(name: str):
    """{"yes": [ids], "no": [ids]}: images that are the tag, and are not."""
    body = _json_body('send JSON like {"yes": [12, 40], "no": [7]}')
    yes, no = _ids(body.get("yes", [])), _ids(body.get("no", []))
    if not yes and not no:
        abort(400, "give images: yes and/or no, lists of image ids")
    lib = library()
    tag = tagger(lib).teach(lib.serving_model, tag_name(name), yes, no)
    return jsonify(_row(lib, tag.name))


@bp.delete("/api/tags/<name>")
def remove_tag(name: str):
    library().catalog.tags.remove(tag_name(name))
    return "", 204


@bp.get("/api/images/<int:image_id>/describe")
def describe_image(image_id: int):
    k = request.args.get("k", "5")
    if not k.isdigit() or not 1 <= int(k) <= 100:
        abort(400, "k must be a whole number between 1 and 100")
    return jsonify(description(library(), image_id, int(k)).to_json())


def description(lib: Library, image_id: int, k: int = 5):
    lib.catalog.image(image_id)  # 404 for an unknown id
    model_id = lib.searcher.serving_model()
    vector = lib.catalog.vector_of(image_id, model_id)
    captions, vectors = known_captions_of(lib)(model_id)
    return describe(lib.catalog, model_id, vector, captions, vectors, k)


@bp.post("/images/<int:image_id>/tags")
def mark(image_id: int):
    """The pages' form: name, mark = yes|no, next = where to go back to (this site)."""
    mark = request.form.get("mark", "")
    if mark not in ("yes", "no"):
        abort(400, "mark must be yes or no")
    name = tag_name(_text(request.form.get("name"), "a tag name", 200))
    lib = library()
    lib.catalog.image(image_id)
    marks = ([image_id], []) if mark == "yes" else ([], [image_id])
    tagger(lib).teach(lib.serving_model, name, *marks)
    back = request.form.get("next", "")
    # Only a path on this site: an open redirect would let another site bounce users here.
    parts = urlsplit(back)
    if not back.startswith("/") or back.startswith("//") or parts.scheme or parts.netloc:
        back = url_for("pages.image", image_id=image_id, _anchor="tags")
    return redirect(back, code=303)


def _json_body(example: str) -> dict:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        abort(400, example)
    return body


def _text(raw: object, what: str, most: int) -> str:
    if not isinstance(raw, str) or not raw.strip():
        abort(400, f"{what} needs some text")
    if len(raw) > most:
        abort(400, f"{what} may be at most {most} characters")
    return raw.strip()


def _ids(raw: object) -> list[int]:
    if not isinstance(raw, list) or len(raw) > MAX_MARKS:
        abort(400, f"yes and no are lists of at most {MAX_MARKS} image ids")
    if not all(isinstance(i, int) and not isinstance(i, bool) and i > 0 for i in raw):
        abort(400, "image ids are positive whole numbers")
    return raw
