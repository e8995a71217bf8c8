"""Typed exceptions raised by library code.

Only the CLI and the web layer turn these into messages and exit codes; library code
never prints or exits.
"""

from __future__ import annotations

import errno
import os
import re


class ImgsearchError(Exception):
    """Base for every error the user can act on (the CLI prints it as one line)."""


class ConfigError(ImgsearchError):
    """Bad settings, flags or arguments."""


class CatalogError(ImgsearchError):
    """The catalog cannot be opened or is from a newer version."""


class ModelError(ImgsearchError):
    """A model spec cannot be resolved or its weights cannot be loaded."""


class ImageDecodeError(ImgsearchError):
    """An image file cannot be decoded safely; ``reason`` is short and user-facing."""

    def __init__(self, reason: str, path: str | None = None) -> None:
        self.reason = reason
        self.path = path
        super().__init__(f"{path}: {reason}" if path else reason)


class QueryError(ImgsearchError):
    """A search request that cannot be answered (bad term, unknown image id, ...)."""


class NotFound(ImgsearchError):
    """An id that is not in the catalog."""


class StorageError(ImgsearchError):
    """A write failed for want of space or permission; what was committed is kept."""


# What a full, read-only or failing disk looks like from here: the errno of an OSError, and
# SQLite's own wording (it reports these as OperationalError, without the file's path).
_DISK_ERRNOS = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only disk",
    errno.EIO: "disk I/O error",
}
_SQLITE_DISK = {
    "database or disk is full": "disk full",
    "disk I/O error": "disk I/O error",
    "attempt to write a readonly database": "read-only disk",
}


def storage_failure(exc: BaseException, catalog: str, advice: str | None = None) -> str | None:
    """One line for an error that a full or failing disk caused anywhere in a command
    (a catalog commit, an index file, a thumbnail, a saved model, a checkpoint), else
    None. Every write is atomic (a transaction, or a temporary file renamed into place),
    so such a failure leaves what was committed as it was. `catalog`: its path, which
    SQLite's errors do not name; `advice`: what to do, where the default does not fit."""
    advice = advice or _ADVICE
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _DISK_ERRNOS:
            where = f" at {exc.filename}" if exc.filename else ""
            return f"{_DISK_ERRNOS[exc.errno]} while writing{where}: {advice}"
        text = str(exc)
        if type(exc).__name__ == "OperationalError":
            kind = next((k for m, k in _SQLITE_DISK.items() if m in text), None)
            if kind:
                return f"{kind} while writing the catalog at {catalog}: {advice}"
        # Native writers that report the OS error only in their text: FAISS ("write
        # error in PATH: ... (No space left on device)"), safetensors ("I/O error: No
        # space left on device (os error 28)").
        for number, kind in _DISK_ERRNOS.items():
            if f"({os.strerror(number)})" in text or f"(os error {number})" in text:
                path = re.search(r"write error in (\S+?):", text)
                where = f" at {path.group(1)}" if path else ""
                return f"{kind} while writing{where}: {advice}"
        exc = exc.__cause__ or exc.__context__
    return None


_ADVICE = "free space (or fix the disk) and re-run; nothing committed was lost"
