"""`imgsearch serve`: the web UI on waitress (never Flask's debugger, which runs code)."""

from __future__ import annotations

import contextlib
import logging
import signal
import sys

import click

from search.cli import GlobalOptions, settings_from

SERVER_THREADS = 4


def make_server(app, host: str, port: int):
    """A waitress server bound now (port 0 picks a free one: see ``effective_port``);
    ``run()`` serves until ``close()``."""
    from waitress.server import create_server

    return create_server(app, host=host, port=port, threads=SERVER_THREADS, ident="imgsearch")


# None means "not given", so IMGSEARCH_HOST / IMGSEARCH_PORT still apply.
@click.command("serve", help="The web UI: search, browse and caption in a browser.")
@click.option(
    "--host", metavar="HOST", help="address to bind (default 127.0.0.1: this machine only)"
)
@click.option("--port", type=int, metavar="PORT", help="port (default 8765; 0 picks a free one)")
@click.option(
    "--ray",
    metavar="ADDRESS",
    help="search shards of the index on this Ray cluster ('auto': a Ray instance here; "
    "default $IMGSEARCH_RAY)",
)
@click.pass_obj
def serve_command(
    options: GlobalOptions, host: str | None, port: int | None, ray: str | None
) -> int:
    settings = settings_from(options, host=host, port=port, ray=ray)
    with _on_ray(settings.ray) as cluster:
        return _serve(settings, cluster)


@contextlib.contextmanager
def _on_ray(address: str):
    """The ray module connected to `address` for the server's life; None without one."""
    if not address:
        yield None
        return
    from search.raycluster import connect, load_ray

    ray = load_ray()
    connect(ray, address)
    try:
        yield ray
    finally:
        ray.shutdown()


def _serve(settings, cluster) -> int:
    from search.library import Library
    from webui import create_app

    # A page of thumbnails briefly queues requests behind the worker threads; for one
    # user's browser that is expected, not worth a warning per page.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    with Library(settings) as lib:
        if cluster is not None:
            lib.serve_from_shards(cluster)
        app = create_app(library=lib)
        server = make_server(app, settings.host, settings.port)
        bound = server.effective_host
        shown = f"[{bound}]" if ":" in bound else bound
        print(f"imgsearch: serving http://{shown}:{server.effective_port}/", file=sys.stderr)
        if settings.host not in ("127.0.0.1", "localhost", "::1"):
            print(
                "imgsearch: warning: not bound to this machine only: anyone who can reach "
                "this address can see your photos",
                file=sys.stderr,
            )
        # create_app loads the query model in the background (webui/warmup.py): say when.
        app.extensions["imgsearch.warmup"].on_done(
            lambda w: print(f"imgsearch: {w.describe()}", file=sys.stderr)
        )
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
