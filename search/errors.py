"""Typed exceptions raised by library code.

Only the CLI and the web layer turn these into messages and exit codes; library code
never prints or exits.
"""

from __future__ import annotations


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
