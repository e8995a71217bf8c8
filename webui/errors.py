"""Typed library errors and HTTP errors as responses: JSON for the API and the file
routes, an HTML page for the pages. Messages are the library's own, user-facing ones."""

from __future__ import annotations

from flask import Flask, current_app, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from search.errors import (
    ImageDecodeError,
    ImgsearchError,
    NotFound,
    QueryError,
    storage_failure,
)

_MACHINE_PREFIXES = ("/api/", "/files/", "/thumbs/", "/static/")


def error_response(status: int, message: str):
    if request.path.startswith(_MACHINE_PREFIXES):
        return jsonify({"error": message}), status
    return render_template("error.html", status=status, message=message), status


def init_app(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return error_response(exc.code or 500, exc.description or exc.name)

    # Flask answers an error with the handler of its most specific class. 503 for the rest
    # (a model that cannot load, a catalog that cannot open): nothing the request could
    # change, but the message says what the user can do.
    for error, code in ((NotFound, 404), (QueryError, 400), (ImgsearchError, 503)):
        app.register_error_handler(error, lambda exc, code=code: error_response(code, str(exc)))

    @app.errorhandler(ImageDecodeError)
    def bad_image(exc: ImageDecodeError):
        return error_response(400, f"the image was refused: {exc.reason}")

    @app.errorhandler(Exception)
    def storage(exc: Exception):
        # A full or failing disk under a write (a caption, a thumbnail, an index
        # rebuilt): 507 for that request; reads go on being served.
        library = current_app.extensions["imgsearch.library"]
        line = storage_failure(exc, library.settings.catalog_name)
        if line is None:
            raise exc
        return error_response(507, line)
