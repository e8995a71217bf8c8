"""Walk a root for image files: hidden and system folders skipped, symlink cycles cut."""

from __future__ import annotations

import fnmatch
import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from search.imageio import IMAGE_EXTENSIONS, UNSUPPORTED_FORMATS
from search.videos import VIDEO_EXTENSIONS

# What the walk reports: images, videos, and the pictures it lists as not indexed, with why.
FOUND_EXTENSIONS = IMAGE_EXTENSIONS | VIDEO_EXTENSIONS | frozenset(UNSUPPORTED_FORMATS)

# Folders that NAS boxes, OSes and tools fill with thumbnails or trash, never photos.
SYSTEM_DIRS = frozenset(
    {
        "@eaDir",
        "#recycle",
        "$RECYCLE.BIN",
        "System Volume Information",
        "lost+found",
        "__MACOSX",
        "node_modules",
    }
)
HASH_CHUNK = 64 * 1024


@dataclass(frozen=True)
class FoundFile:
    path: str
    size: int
    mtime_ns: int


def scan_root(
    root: str, exclude: Sequence[str] = (), include_hidden: bool = False
) -> Iterator[FoundFile]:
    """Image files under `root`, depth first in name order.

    Symlinks are followed only where they stay inside the root, and a directory reached
    again by any route (a symlink cycle, two links to one place) is skipped. `exclude`
    holds glob patterns matched against the path relative to the root and each name.
    Names with a leading dot are skipped unless `include_hidden`.
    """
    seen_dirs: set[tuple[int, int]] = set()
    # The web UI serves only files whose real path is inside a root, so a link that
    # leads outside would index images nobody could open: such links are not followed.
    inside = _real_dir(root)
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            st = os.stat(folder)
            key = (st.st_dev, st.st_ino)
            if key in seen_dirs:
                continue
            seen_dirs.add(key)
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            continue  # unreadable or vanished folder: nothing to index there
        subdirs = []
        for entry in entries:
            name = entry.name
            hidden = name.startswith(".") and not include_hidden
            if hidden or _excluded(entry.path, name, root, exclude):
                continue
            try:
                if entry.is_symlink() and not _real_dir(entry.path).startswith(inside):
                    continue
                if entry.is_dir():
                    if name not in SYSTEM_DIRS:
                        subdirs.append(entry.path)
                    continue
                if os.path.splitext(name)[1].lower() not in FOUND_EXTENSIONS:
                    continue
                if not entry.is_file():
                    continue
                fst = entry.stat()
            except OSError:
                continue  # a dangling link or a file deleted while we walk
            yield FoundFile(entry.path, fst.st_size, fst.st_mtime_ns)
        stack.extend(reversed(subdirs))


def _real_dir(path: str) -> str:
    """The real path with a trailing separator, so /photos-old never counts as inside
    /photos."""
    return os.path.join(os.path.realpath(path), "")


def storable_path(path: str) -> str:
    """The path as UTF-8 text. A name that is not valid UTF-8 reaches Python with surrogate
    escapes that SQLite cannot store; such a file is shown (and failed) with its bad bytes
    escaped instead."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _excluded(path: str, name: str, root: str, patterns: Sequence[str]) -> bool:
    if not patterns:
        return False
    rel = os.path.relpath(path, root)
    return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(name, p) for p in patterns)


def content_hash(path: str, size: int) -> str:
    """Size plus the first and last 64 KiB: recognises a renamed file without reading
    all of it (rclip's trick), and a changed file almost always differs there."""
    with open(path, "rb") as f:
        return file_hash(f, size)


def file_hash(f: BinaryIO, size: int) -> str:
    """content_hash of a file already open (at its start), so the decoder that hashes a
    file reads it through the same open; leaves `f` anywhere."""
    h = hashlib.sha256(str(size).encode())
    h.update(f.read(HASH_CHUNK))
    if size > 2 * HASH_CHUNK:
        f.seek(-HASH_CHUNK, os.SEEK_END)
        h.update(f.read(HASH_CHUNK))
    elif size > HASH_CHUNK:
        h.update(f.read())
    return h.hexdigest()
