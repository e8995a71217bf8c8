"""The query model loads when the server starts, not on the first search.

Loading it took the first `/api/search` after `serve` 4.9 s (torch) while the next ones
took ~10 ms. ``WarmUp`` loads the serving model in a thread as the app is created (the
pages answer meanwhile), opens both towers of an ONNX export (text queries and search by
example), runs one search end to end, and says when it is done: ``GET /api/status`` has
``"warm_up"`` and a log line is written. The searcher keeps the model for as long as the
server runs: it is never unloaded.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from search.library import Library
from search.query.searcher import SearchRequest

log = logging.getLogger(__name__)


class WarmUp:
    """States: "off" (not started), "loading", "ready", "idle" (nothing indexed yet:
    nothing to load), "failed" (the first search will report why)."""

    def __init__(self, library: Library) -> None:
        self._library = library
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._callbacks: list[Callable[[WarmUp], None]] = []
        self.state = "off"
        self.model_id: str | None = None
        self.engine: str | None = None
        self.seconds: float | None = None
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, name="warm-up", daemon=True)

    def start(self) -> None:
        self.state = "loading"
        self._thread.start()

    def _run(self) -> None:
        started = time.perf_counter()
        try:
            model_id = self._library.serving_model
            if model_id is None:
                self._finish("idle", started)
                return
            self.model_id = model_id
            searcher = self._library.searcher
            encoder = searcher.encoder(model_id)
            load = getattr(encoder, "load", None)
            if load is not None:  # an ONNX export: open both towers now
                load(text=True, image=True)
            # One query end to end: the index file read, the model's first run, the
            # catalog's statements compiled.
            searcher.search(SearchRequest(text="a photo", k=1))
            self.engine = encoder.engine
            self._finish("ready", started)
        except Exception as exc:  # noqa: BLE001 - only a head start: searches report errors
            self.error = f"{type(exc).__name__}: {exc}"
            self._finish("failed", started)

    def _finish(self, state: str, started: float) -> None:
        with self._lock:
            self.seconds = round(time.perf_counter() - started, 3)
            self.state = state
            callbacks = list(self._callbacks)
            # Set under the lock: an on_done between the copy and here would otherwise
            # append a callback nobody calls.
            self._done.set()
        log.info("%s", self.describe())
        for callback in callbacks:
            callback(self)

    def on_done(self, callback: Callable[[WarmUp], None]) -> None:
        """Call `callback(self)` once the warm-up ends (at once if it has)."""
        with self._lock:
            if not self._done.is_set():
                self._callbacks.append(callback)
                return
        callback(self)

    def describe(self) -> str:
        if self.state == "ready":
            return (
                f"model ready for search in {self.seconds:.1f} s ({self.engine}): {self.model_id}"
            )
        if self.state == "idle":
            return "nothing indexed yet: no model to load"
        if self.state == "failed":
            return f"could not load the model yet: {self.error}"
        if self.state == "off":
            return "the model loads on the first search"
        return f"loading the model: {self.model_id or '...'}"

    def status(self) -> dict:
        return {
            "state": self.state,
            "model_id": self.model_id,
            "engine": self.engine,
            "seconds": self.seconds,
            "error": self.error,
        }
