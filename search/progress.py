"""Progress of a long run, shown to a person and, optionally, to another process.

A person sees a tqdm bar on stderr. Another process (the web UI, which runs `index` and
`train` in the background) reads a small JSON status file that each bar rewrites whole:

    {"desc", "done", "total", "unit", "rate", "postfix": {...}, "updated_at", "closed"}

`rate` is `unit`s per second since the bar started. The file is rewritten at most
``WRITE_INTERVAL_S`` apart (a bar may tick thousands of times a second) and when the bar
closes; each new bar (a new stage of the run) starts it afresh.
"""

from __future__ import annotations

import json
import math
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from search.diskfiles import atomic_write

WRITE_INTERVAL_S = 0.25


class Progress:
    """Where a run's bars go: stderr when `show`, the JSON `status_file` when given."""

    def __init__(self, show: bool = True, status_file: Path | None = None) -> None:
        self.show = show
        self.status_file = status_file

    def bar(self, total: int | None, desc: str, unit: str) -> Bar:
        """A new stage of the run; `total` None when it is not known in advance."""
        return Bar(total, desc, unit, show=self.show, status_file=self.status_file)


class Bar:
    """One stage's progress; a context manager that closes it. Safe to update from
    several threads."""

    def __init__(
        self,
        total: int | None,
        desc: str,
        unit: str,
        *,
        show: bool = True,
        status_file: Path | None = None,
    ) -> None:
        self.total = total
        self.desc = desc
        self.unit = unit
        self.done = 0
        self.postfix: dict[str, object] = {}
        self._status_file = status_file
        self._started = time.monotonic()
        self._written = -WRITE_INTERVAL_S
        self._closed = False
        self._lock = threading.Lock()
        self._tqdm = None
        if show:
            from tqdm import tqdm  # imported only where a bar is shown

            self._tqdm = tqdm(
                total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True
            )
        self._write(force=True)

    def update(self, n: int = 1) -> None:
        with self._lock:
            self.done += n
            if self._tqdm is not None:
                self._tqdm.update(n)
            self._write()

    def set_postfix(self, **values: object) -> None:
        with self._lock:
            self.postfix = dict(values)
            if self._tqdm is not None:
                self._tqdm.set_postfix(**values)
            self._write()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._tqdm is not None:
                self._tqdm.close()
            self._write(force=True)

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def status(self) -> dict:
        """What the status file holds."""
        elapsed = time.monotonic() - self._started
        return {
            "desc": self.desc,
            "done": self.done,
            "total": self.total,
            "unit": self.unit,
            "rate": round(self.done / elapsed, 3) if elapsed > 0 else None,
            "postfix": {k: _plain(v) for k, v in self.postfix.items()},
            "updated_at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "closed": self._closed,
        }

    def _write(self, force: bool = False) -> None:
        if self._status_file is None:
            return
        now = time.monotonic()
        if not force and now - self._written < WRITE_INTERVAL_S:
            return
        self._written = now
        try:
            atomic_write(self._status_file, json.dumps(self.status()).encode())
        except OSError:
            # Progress is a courtesy to a watcher: a full disk must not stop the run.
            self._status_file = None


def read_status(path: Path) -> dict | None:
    """A status file's content; None when there is none (yet) or it cannot be read."""
    try:
        status = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return status if isinstance(status, dict) else None


def _plain(value: object) -> object:
    """A JSON value: numbers, text, booleans and None as they are, anything else (a NaN
    loss included, which JSON cannot hold) as text."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    return str(value)
