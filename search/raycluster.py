"""Reaching a Ray cluster, for the commands that use one (`index --ray`, `serve --ray`):
the `cluster` extra, an address told unreachable at once, Ray's own chatter kept quiet."""

from __future__ import annotations

import logging
import socket

from search.errors import ConfigError

MISSING = "a Ray cluster needs the cluster extra: pip install 'imgsearch[cluster]'"


def load_ray():
    """The ray module (with Ray Data), or a one-line error naming the extra."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise ConfigError(MISSING) from exc
    return ray


def connect(ray, address: str) -> None:
    """ray.init for `address` ("auto": a Ray instance of this machine's cores)."""
    # Ray's own notes (token set-up, a job's plan and timings) are not the user's
    # business; its errors still show.
    quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": "error"}
    try:
        if address == "auto":
            ray.init(**quiet)
        else:
            _reachable(address)
            ray.init(address=address, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(f"cannot reach the Ray cluster at {address}: {exc}") from exc
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)


def _reachable(address: str) -> None:
    """Ray waits minutes for a head that is not there: a mistyped address is told at once."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not port.isdigit():
        return  # not host:port: Ray's own parsing says what is wrong
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except OSError as exc:
        raise ConfigError(f"cannot reach the Ray cluster at {address}: {exc}") from exc
