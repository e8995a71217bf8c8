"""What keeps a local photo server private: trusted Host names, CSRF, response headers.

The server holds someone's whole photo library and answers on a loopback port that every
web page the user visits can reach. So: a foreign Host header (DNS rebinding) gets 400, a
state-changing request needs the app's secret token and, from a browser, a same-origin
Origin or Referer, and responses forbid being embedded, sniffed or loading anything external.
"""

from __future__ import annotations

import hmac
import re
import secrets
import socket
from urllib.parse import urlsplit

from flask import Flask, abort, current_app, request
from werkzeug.routing import IntegerConverter

from search.settings import Settings
from webui.search_params import MAX_IMAGE_ID

CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "img-src 'self' blob: data:",
        "script-src 'self'",
        "style-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    # Other sites may not even load the photos as <img> (they could time or count them).
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})
_WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::", "[::]"})
_HOST = re.compile(r"(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(?::([0-9]{1,5}))?")


class ImageIdConverter(IntegerConverter):
    """`<int:...>` limited to ASCII digits and SQLite's INTEGER range: a 20-digit id is a
    404 like any other unknown id, not an OverflowError deep in the database driver."""

    regex = r"[0-9]+"

    def __init__(self, map, *args, **kwargs) -> None:
        kwargs.setdefault("max", MAX_IMAGE_ID)
        super().__init__(map, *args, **kwargs)


def trusted_hosts(settings: Settings) -> frozenset[str]:
    """Host names the server answers to: loopback, the bound host, and this machine's name
    when bound to every interface (the user chose to be reachable on the network)."""
    names = set(LOOPBACK_NAMES)
    host = settings.host.strip().lower()
    if host in _WILDCARD_BINDS:
        names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
    else:
        names.add(f"[{host}]" if ":" in host and not host.startswith("[") else host)
    return frozenset(names)


def host_name(header: str) -> str | None:
    """The name part of a Host header ('[::1]:8765' → '[::1]'), or None if malformed.

    Werkzeug's own TRUSTED_HOSTS check cannot list an IPv6 address, hence this."""
    m = _HOST.fullmatch(header.strip().lower())
    if m is None or (m.group(2) and not 1 <= int(m.group(2)) <= 65535):
        return None
    return m.group(1).rstrip(".")


def csrf_token() -> str:
    return current_app.config["CSRF_TOKEN"]


def check_host() -> None:
    name = host_name(request.headers.get("Host", ""))
    if name is None or name not in current_app.config["IMGSEARCH_TRUSTED_HOSTS"]:
        abort(400, "untrusted Host header")


def check_csrf() -> None:
    """Every state-changing request: the token (header or form field) and, when the client
    is a browser that says where the request comes from, the same origin."""
    if request.method in SAFE_METHODS:
        return
    if request.routing_exception is not None:
        return  # no route takes it (404, 405): nothing runs that could change state
    own = f"{request.scheme}://{request.host}".lower()
    origin = request.headers.get("Origin")
    referer = request.headers.get("Referer")
    if origin is None and referer is not None:
        parts = urlsplit(referer)
        origin = f"{parts.scheme}://{parts.netloc}"
    if origin is not None and origin.lower() != own:
        # Includes "null" (sandboxed frames, file:// pages).
        abort(403, "cross-origin request refused")
    # Neither header: not a browser (curl, a script), which cannot be tricked into
    # sending the token; the token check below still applies.
    sent = request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD, "")
    if not hmac.compare_digest(sent.encode(), csrf_token().encode()):
        abort(403, "missing or stale CSRF token: reload the page and try again")


def add_security_headers(response):
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def init_app(app: Flask, settings: Settings) -> None:
    # Before any route is registered: rules bind their converters when added.
    app.url_map.converters["int"] = ImageIdConverter
    app.config["CSRF_TOKEN"] = secrets.token_urlsafe(32)
    app.config["IMGSEARCH_TRUSTED_HOSTS"] = trusted_hosts(settings)
    app.before_request(check_host)
    app.before_request(check_csrf)
    app.after_request(add_security_headers)
    app.context_processor(lambda: {"csrf_token": csrf_token(), "csrf_field": CSRF_FIELD})
