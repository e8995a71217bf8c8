"""Long runs the web UI starts in the background: re-indexing with another model, and
fine-tuning on the library's captions.

Each job runs the project's own command line (`python -m search.cli --home HOME ...`) in a
subprocess, one stage after another, so the web UI never imports the indexer (DESIGN.md's
dependency rule) and a crash or a leak in a run cannot take the server down. The child
gets the server's library settings through `IMGSEARCH_*` variables, the way every setting
reaches a command, and writes its progress to a status file (search.progress) that the
server reads when asked. Searches keep answering meanwhile: the catalog switches the
serving model only once the new model's index is complete.

One job runs at a time; a job still running when the server exits is interrupted (Ctrl-C,
which an index run survives without losing what it committed).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

from search.progress import read_status
from search.settings import Settings

JOBS_DIR = "jobs"  # inside the library's home
STATUS_FILE = "progress.json"
LOG_FILE = "job.log"  # the last job's stderr, kept for a person to read after it ends
# Fine-tuning from the web UI is refused below this many captioned photos. Contrastive
# training learns from each caption against the other photos of its batch, so a handful
# of pairs teaches little but noise; and a tenth of the photos is held out to measure
# recall before and after (the trainer itself only refuses fewer than 2 training pairs).
# 20 leaves 18 photos to contrast and 2 to check on: the least worth a person's wait.
MIN_CAPTIONED_IMAGES = 20
# Settings the child does not inherit: the home is passed as --home, the model is the
# library's active one (what `use` just chose), and the status file is the job's own.
_NOT_INHERITED = frozenset({"home", "model", "pretrained", "progress_file"})
_STOP_GRACE_S = 10.0
_TAIL_BYTES = 16_384
_ERROR_PREFIX = "imgsearch: error: "


class JobBusy(Exception):
    """A job is already running."""


@dataclass(frozen=True)
class Stage:
    label: str  # what the page says while it runs: "re-indexing"
    args: tuple[str, ...]  # the command line after `imgsearch --home HOME`


def child_env(settings: Settings, status_file: Path) -> dict[str, str]:
    """The environment for a job: this one without IMGSEARCH_* variables, then the
    server's settings as IMGSEARCH_* variables (device, precision, workers, batch size,
    limits, ...), so the child's Settings.load builds the same library view."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMGSEARCH_")}
    for f in fields(settings):
        value = getattr(settings, f.name)
        if f.name in _NOT_INHERITED or value is None:
            continue
        if isinstance(value, bool):
            text = "1" if value else "0"
        elif isinstance(value, tuple):
            text = os.pathsep.join(value)
        else:
            text = str(value)
        env[f"IMGSEARCH_{f.name.upper()}"] = text
    env["IMGSEARCH_PROGRESS_FILE"] = str(status_file)
    return env


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(eq=False)
class Job:
    """One background job; its fields change only under the runner's lock."""

    id: int
    kind: str  # "use" or "train"
    title: str
    stages: list[Stage]
    target: str  # the model made active, or the name being trained
    summary: Callable[[dict | None], str] | None = None
    state: str = "running"  # then "done" or "failed"
    stage_index: int = 0
    exit_code: int | None = None
    message: str | None = None
    result: dict | None = None  # the last stage's --json report
    progress: dict | None = None  # the last status read, kept once it ends
    started_at: str = field(default_factory=_now)
    finished_at: str | None = None

    @property
    def running(self) -> bool:
        return self.state == "running"

    def as_json(self) -> dict:
        progress = self.progress or {}
        return {
            "id": self.id,
            "kind": self.kind,
            "title": self.title,
            "target": self.target,
            "state": self.state,
            "stage": self.stages[self.stage_index].label,
            "stage_number": self.stage_index + 1,
            "stages": len(self.stages),
            **{key: progress.get(key) for key in ("desc", "done", "total", "unit", "rate")},
            "postfix": progress.get("postfix") or {},
            "message": self.message,
            "exit_code": self.exit_code,
            "result": self.result,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }


class JobRunner:
    """Runs jobs for one library, one at a time, each in a thread that waits on its
    subprocess."""

    def __init__(self, settings: Settings) -> None:
        self.home = settings.home
        self.dir = settings.home / JOBS_DIR
        self.status_file = self.dir / STATUS_FILE
        self.log_file = self.dir / LOG_FILE
        self.env = child_env(settings, self.status_file)
        self.command = [sys.executable, "-m", "search.cli", "--home", str(settings.home)]
        self._lock = threading.Lock()
        self._job: Job | None = None
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None
        self._closing = False
        self._count = 0
        _RUNNERS.add(self)

    def start(
        self,
        kind: str,
        title: str,
        stages: list[Stage],
        target: str,
        summary: Callable[[dict | None], str] | None = None,
    ) -> Job:
        """Start a job (JobBusy while one runs); `summary` turns the last stage's --json
        report into the message shown when it succeeds."""
        with self._lock:
            if self._closing:
                raise JobBusy("the server is shutting down")
            if self._job is not None and self._job.running:
                raise JobBusy(
                    f"“{self._job.title}” is still running: wait for it to finish, then try again"
                )
            self._count += 1
            job = Job(self._count, kind, title, stages, target, summary)
            self._job = job
            self.dir.mkdir(parents=True, exist_ok=True)
            self.log_file.write_bytes(b"")
            self._thread = threading.Thread(
                target=self._run, args=(job,), name=f"imgsearch-job-{job.id}", daemon=True
            )
            self._thread.start()
            return job

    def current(self) -> dict | None:
        """The running job, or the last one to end (None before the first)."""
        with self._lock:
            job = self._job
            if job is None:
                return None
            if job.running:
                job.progress = read_status(self.status_file) or job.progress
            return job.as_json()

    def busy(self) -> bool:
        with self._lock:
            return self._job is not None and self._job.running

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the current job to end; False if it is still running after `timeout`."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return not self.busy()

    def close(self) -> None:
        """Interrupt a running job and wait for it to end (the server is going away)."""
        with self._lock:
            self._closing = True
            proc = self._proc
        if proc is not None and proc.poll() is None:
            # SIGINT: the CLI stops cleanly (KeyboardInterrupt), keeping what it committed.
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
            try:
                proc.wait(_STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.wait(_STOP_GRACE_S)

    # -- the job's thread --------------------------------------------------------------
    def _run(self, job: Job) -> None:
        try:
            for i, stage in enumerate(job.stages):
                code, stdout = self._run_stage(job, i, stage)
                if code != 0:
                    self._finish(job, "failed", code, self._failure_message(code))
                    return
                with self._lock:
                    job.progress = read_status(self.status_file) or job.progress
                    job.result = _json_report(stdout)
            self._finish(job, "done", 0, job.summary(job.result) if job.summary else None)
        except Exception as exc:  # noqa: BLE001 - a job's end must always be recorded
            self._finish(job, "failed", None, f"the job could not run: {exc}")

    def _run_stage(self, job: Job, index: int, stage: Stage) -> tuple[int, bytes]:
        with self._lock:
            if self._closing:
                return -signal.SIGINT, b""
            job.stage_index = index
            job.progress = None
            self.status_file.unlink(missing_ok=True)  # the last stage's numbers
            with self.log_file.open("ab") as log:
                log.write(f"$ imgsearch {' '.join(stage.args)}\n".encode())
                log.flush()
                self._proc = subprocess.Popen(
                    [*self.command, *stage.args],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    env=self.env,
                    cwd=self.home,
                )
            proc = self._proc
        stdout, _ = proc.communicate()
        with self._lock:
            self._proc = None
        return proc.returncode, stdout

    def _finish(self, job: Job, state: str, code: int | None, message: str | None) -> None:
        with self._lock:
            job.state = state
            job.exit_code = code
            job.message = message
            job.finished_at = _now()

    def _failure_message(self, code: int) -> str:
        if self._closing:
            return "stopped: the server shut down"
        lines = _tail_lines(self.log_file)
        errors = [line[len(_ERROR_PREFIX) :] for line in lines if line.startswith(_ERROR_PREFIX)]
        if errors:
            return errors[-1]
        shown = [line for line in lines if not line.startswith("$ ")][-5:]
        return "\n".join(shown) or f"the command failed (exit code {code}) without saying why"


def _tail_lines(path: Path) -> list[str]:
    """The last lines written to `path`; progress bars rewrite theirs with \\r."""
    try:
        with path.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - _TAIL_BYTES))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [line.strip() for line in text.replace("\r", "\n").split("\n") if line.strip()]


def _json_report(stdout: bytes) -> dict | None:
    try:
        report = json.loads(stdout)
    except ValueError:
        return None
    return report if isinstance(report, dict) else None


# Every runner's job is interrupted when the server process exits.
_RUNNERS: weakref.WeakSet[JobRunner] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for runner in list(_RUNNERS):
        runner.close()
