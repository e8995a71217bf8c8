"""What the Ray tests share: a hard time limit (a stuck cluster fails a test, never hangs
the suite) and the check that no Ray process is left behind."""

from __future__ import annotations

import os
import signal
import subprocess
from contextlib import contextmanager


@contextmanager
def deadline(seconds: int):
    def expired(*_):
        raise TimeoutError(f"a Ray test ran past {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def ray_processes() -> list[str]:
    """Ray's servers (raylets, GCS) this test process started and that are still running."""
    mine = str(os.getpid())
    out = subprocess.run(["ps", "-eo", "pid,ppid,args"], capture_output=True, text=True).stdout
    return [
        line
        for line in out.splitlines()[1:]
        if ("raylet" in line or "gcs_server" in line) and line.split()[1] == mine
    ]
