"""The web UI: a Flask app factory in the flaskr style.

Services live in ``app.extensions``: ``imgsearch.library`` (catalog, index store,
searcher), ``imgsearch.thumbnails``, ``imgsearch.jobs`` (background re-index and
training runs) and ``imgsearch.warmup`` (the query model loading as the app starts).
Blueprints: ``pages`` (HTML), ``api`` (JSON), ``files`` (originals and
thumbnails by id), ``tags`` (tags, teaching, describing) and ``models`` (the Models
page, its API and the jobs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

    from search.library import Library

# Uploads are query images; nobody needs to send a 20 MB one, and the cap bounds memory.
MAX_UPLOAD_BYTES = 20 * 1024 * 1024


def create_app(*, library: Library, warm_up: bool = True) -> Flask:
    """The app for an open ``library`` (the caller closes it). ``warm_up``: load the
    serving model in the background now, so the first search does not wait for it."""
    # Imported here: `imgsearch --help` loads webui.commands, and must stay fast.
    from flask import Flask

    from webui import api, duplicates, errors, files, models, pages, security, tags
    from webui.warmup import WarmUp

    settings = library.settings
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_UPLOAD_BYTES
    app.json.sort_keys = False  # keep the documented key order
    app.extensions["imgsearch.library"] = library
    app.extensions["imgsearch.thumbnails"] = files.Thumbnails(
        settings.thumbs_dir, settings.max_megapixels
    )
    security.init_app(app, settings)
    errors.init_app(app)
    app.register_blueprint(pages.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(files.bp)
    app.register_blueprint(tags.bp)
    app.register_blueprint(duplicates.bp)
    models.init_app(app, settings)
    warmup = app.extensions["imgsearch.warmup"] = WarmUp(library)
    if warm_up:
        warmup.start()
    return app
