"""The Duplicates page and `GET /api/duplicates`: groups of exact copies, edits of one
photo and bursts, for review. Nothing here deletes or moves a file."""

from __future__ import annotations

from flask import Blueprint, jsonify, render_template, url_for

from search.catalog.dupstore import StoredGroup
from search.duplicates.groups import duplicate_groups
from webui.api import library

bp = Blueprint("duplicates", __name__)

KIND_TITLES = {
    "exact": "Exact copies — the same pixels in different files",
    "near": "Edits of one photo — recompressed, resized, cropped or retouched",
    "burst": "Bursts — shots of one scene seconds apart",
}


def _groups() -> tuple[list[StoredGroup], dict]:
    lib = library()
    groups = duplicate_groups(lib.catalog, lib.settings.max_megapixels)
    metas = lib.catalog.images(i for g in groups for i in g.ids)
    return groups, metas


@bp.get("/duplicates")
def page():
    groups, metas = _groups()
    by_kind = {kind: [g for g in groups if g.kind == kind] for kind in KIND_TITLES}
    return render_template("duplicates.html", by_kind=by_kind, titles=KIND_TITLES, metas=metas)


@bp.get("/api/duplicates")
def api_duplicates():
    groups, metas = _groups()
    return jsonify(
        {
            "groups": [
                {
                    "kind": g.kind,
                    "ids": [i for i in g.ids if i in metas],
                    "paths": [metas[i].path for i in g.ids if i in metas],
                    "thumb_urls": [
                        url_for("files.thumbnail", image_id=i) for i in g.ids if i in metas
                    ],
                }
                for g in groups
            ]
        }
    )
