"""`imgsearch serve`: the web UI on waitress (never Flask's debugger, which runs code)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from search.cli import settings_from

log = logging.getLogger(__name__)

SERVER_THREADS = 4


def register_serve(sub) -> None:
    p = sub.add_parser("serve", help="the web UI: search, browse and caption in a browser")
    # None means "not given", so IMGSEARCH_HOST / IMGSEARCH_PORT still apply.
    p.add_argument("--host", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, help="port (default 8765; 0 picks a free one)")
    p.set_defaults(handler=run_serve)


def make_server(app, host: str, port: int):
    """A waitress server bound now (port 0 picks a free one: see ``effective_port``);
    ``run()`` serves until ``close()``."""
    from waitress.server import create_server

    return create_server(app, host=host, port=port, threads=SERVER_THREADS, ident="imgsearch")


def run_serve(args: argparse.Namespace) -> int:
    from search.library import Library
    from search.query import SERVING_MODEL
    from webui import create_app

    settings = settings_from(args, host=args.host, port=args.port)
    # A page of thumbnails briefly queues requests behind the worker threads; for one
    # user's browser that is expected, not worth a warning per page.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    with Library(settings) as lib:
        app = create_app(library=lib)
        server = make_server(app, settings.host, settings.port)
        host = server.effective_host
        shown = f"[{host}]" if ":" in host else host
        print(f"imgsearch: serving http://{shown}:{server.effective_port}/", file=sys.stderr)
        if settings.host not in ("127.0.0.1", "localhost", "::1"):
            print(
                "imgsearch: warning: not bound to this machine only: anyone who can reach "
                "this address can see your photos",
                file=sys.stderr,
            )
        serving = lib.catalog.get_setting(SERVING_MODEL)
        if serving:
            # Load the model while the user opens the browser, not on their first query.
            threading.Thread(target=_warm_up, args=(lib, serving), daemon=True).start()
        # A service manager stops the server with SIGTERM, which would end the process on
        # the spot; as SystemExit it ends waitress's loop (as Ctrl-C does) and the `finally`
        # below interrupts a background job rather than leave it running unowned.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            server.run()
        finally:
            server.close()
            app.extensions["imgsearch.jobs"].close()
    return 0


def _warm_up(lib, model_id: str) -> None:
    try:
        lib.searcher.encoder(model_id)
    except Exception as exc:  # the first query reports it properly; this is only a head start
        log.warning("could not load the model yet: %s", exc)
