"""One index run per library at a time, and a way for readers to see one is running."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from search.errors import ImgsearchError

PROBE_GRACE_S = 1.0


class IndexLock:
    def __init__(self, home: Path) -> None:
        self.path = home / "index.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        # Readers probe the lock with a shared lock held for microseconds (held_elsewhere:
        # a server answering /api/status asks on every request); an index run holds it
        # for the whole run. So a refusal is tried again for a moment before it counts.
        deadline = time.monotonic() + PROBE_GRACE_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
                    os.close(fd)
                    pid = f" (pid {holder})" if holder.isdigit() else ""
                    raise ImgsearchError(
                        f"another `imgsearch index`{pid} is running on this library; "
                        "wait for it to finish"
                    ) from None
                time.sleep(0.01)
        # Who holds it, for the message another run gets (the lock itself is the flock).
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> IndexLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def held_elsewhere(self) -> bool:
        if self._fd is not None or not self.path.exists():
            return False
        fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing drops the shared lock too
        return False
