"""Files written whole or not at all, and their checksums.

Index generations, thumbnails, checkpoints and caches are all read by other processes
while they may be rewritten: each is written to a temporary file beside it, flushed to
disk, then renamed over the old one, so a reader sees the old file or the whole new one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

TEMP_SUFFIX = ".tmp"


def atomic_write(path: Path, data: bytes) -> None:
    with replacing(path) as tmp:
        tmp.write_bytes(data)


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A temporary file next to `path` for the block to write; then fsynced and renamed
    over `path`, so readers see the old file or the whole new one. Removed on error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # The writer's pid in the name: a temporary file whose writer was killed mid-write
    # (kill -9 runs no clean-up) can be told from one being written (remove_dead_temps).
    prefix = f".{path.name}.{os.getpid()}."
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=TEMP_SUFFIX)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def file_sha256(path: Path) -> str:
    """The file's sha256 (hex), read in 16 MB steps."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            h.update(chunk)
    return h.hexdigest()


def remove_dead_temps(folder: Path) -> None:
    """Remove the temporary files of `replacing` in `folder` whose writer process no longer
    exists: what a kill in the middle of a write leaves behind."""
    for tmp in folder.glob(f".*{TEMP_SUFFIX}"):
        pid = tmp.name[: -len(TEMP_SUFFIX)].split(".")[-2]
        if pid.isdigit() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True
