"""A throwaway PostgreSQL server for the catalog tests: Debian's `postgresql` package (which
tests/run.sh installs where it can), a cluster in a temporary folder on a free port, fsync
off, stopped at the end of the session. Each test gets a database of its own."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

BIN_GLOB = "/usr/lib/postgresql/*/bin"


def bin_dir() -> Path | None:
    """The newest installed PostgreSQL's programs, or None."""
    found = sorted(Path("/").glob(BIN_GLOB.lstrip("/")), key=lambda p: int(p.parent.name))
    return found[-1] if found and (found[-1] / "initdb").exists() else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self) -> None:
        self.bin = bin_dir()
        if self.bin is None:
            raise RuntimeError(
                f"no PostgreSQL under {BIN_GLOB} (Debian, Ubuntu: apt-get install postgresql)"
            )
        # A folder of its own: pytest's are private to the user running the tests, whom
        # the server (as root: PostgreSQL's own user) cannot enter.
        self.folder = Path(tempfile.mkdtemp(prefix="imgsearch-pg-"))
        self.data = self.folder / "data"
        self.port = _free_port()
        self._names = itertools.count()

    def _run(self, *args: str) -> None:
        # initdb refuses to run as root: the server then runs as the package's own user.
        prefix = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
        subprocess.run(prefix + list(args), check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.stop()  # and the folder goes
            raise

    def _start(self) -> None:
        if os.getuid() == 0:
            shutil.chown(self.folder, "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "imgsearch")
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off"
        )
        # -l: the server's output to a file (on our pipes it would keep them open).
        log = str(self.folder / "log")
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", log, "-o", options, "-w", "start"
        )

    def stop(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://imgsearch@127.0.0.1:{self.port}/{database}"

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url().replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute(sql)

    def new_database(self) -> str:
        """An empty database of its own: its URL."""
        name = f"t{next(self._names)}"
        self._admin(f"CREATE DATABASE {name}")
        return self.url(name)

    def drop(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        self._admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
