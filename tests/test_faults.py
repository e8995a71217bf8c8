"""Faults as the field has them (RELIABILITY.md): a real `kill -9` of a real `imgsearch
index` process at random moments, many times over, then a clean re-run.

Exceptions raised inside the process (the other tests' way of interrupting a run) unwind
through `finally` blocks and context managers; SIGKILL runs nothing. What must hold after
any number of them, once an uninterrupted run has finished: SQLite's integrity check, one
row per path, exactly the files on disk indexed, the index's ids the catalog's live ids,
no lock left held, no temporary file left behind.

Where RELIABILITY.md's wording does not apply as written, the same intent is tested:
case 24's `search --no-index` does not exist (a search never indexes; the SIGINT test runs
a plain one); case 31's `/original` and `/thumb` are `/files` and `/thumbs` here (test_webui);
case 34's `/reindex` and `/delete` do not exist, the state-changing routes that do (models/use,
train, captions) are tested instead (test_webui, test_models_page); case 30's CUDA error is
raised by a patched encoder on this GPU-less machine (test_indexer).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time

import numpy as np
import pytest
from imagetree import make_jpeg
from test_cli import IMGSEARCH, clean_env
from tinylib import tiny_settings

from indexer.sync.run import sync
from search.index.lock import IndexLock
from search.library import Library

TINY = ["--model", "imgsearch-tiny", "--pretrained", "none", "--device", "cpu"]
KILLS = 30


def index_process(home, root) -> subprocess.Popen:
    return subprocess.Popen(
        [IMGSEARCH, "--home", str(home), "index", str(root), *TINY, "--quiet"],
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C as a person sends it: a test run started in the background (nohup, `&`)
        # passes SIGINT on ignored, and Python then keeps ignoring it in the child.
        preexec_fn=_default_sigint,
    )


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def search_all(home) -> list[dict]:
    out = subprocess.run(
        [IMGSEARCH, "--home", str(home), "search", "anything", "-k", "1000", "--json"],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["results"]


def check_library(home, root) -> None:
    """After a clean run: SQLite's integrity check, one row per path, exactly the files
    on disk catalogued, and the index holding exactly the catalog's live ids."""
    db = sqlite3.connect(home / "catalog.db")
    try:
        assert db.execute("pragma integrity_check").fetchone()[0] == "ok"
        dup = db.execute("select path from images group by path having count(*) > 1").fetchall()
        assert dup == []
        catalog = dict(db.execute("select id, path from images").fetchall())
    finally:
        db.close()
    assert set(catalog.values()) == {str(p) for p in root.glob("*.jpg")}
    hits = search_all(home)
    assert len(hits) == len(catalog)  # no id twice
    assert {h["id"]: h["path"] for h in hits} == catalog


def change_the_folder(root, rng, serial: list[int]) -> None:
    """What a photo folder goes through between two runs: new photos, one replaced by
    another picture under the same name, one deleted."""
    photos = sorted(root.glob("*.jpg"))
    for _ in range(3):
        serial[0] += 1
        make_jpeg(root / f"new{serial[0]}.jpg", serial[0])
    if photos:
        serial[0] += 1
        make_jpeg(photos[int(rng.integers(len(photos)))], serial[0])
        gone = photos[int(rng.integers(len(photos)))]
        gone.unlink(missing_ok=True)


@pytest.mark.faults
def test_kill_9_at_random_moments_loses_and_doubles_nothing(tmp_path):
    root, home = tmp_path / "photos", tmp_path / "home"
    serial = [1000]
    for i in range(40):
        make_jpeg(root / f"p{i}.jpg", i)
    # A first complete run, in process, which also makes the model's export: the runs
    # killed below start in a fraction of a second, as a user's would.
    with Library(tiny_settings(home, engine="auto")) as lib:
        sync(lib, [str(root)], progress=False)

    # How long a run takes here: the kills land anywhere from its start to its end.
    change_the_folder(root, np.random.default_rng(1), serial)
    started = time.monotonic()
    _, err = index_process(home, root).communicate(timeout=300)
    typical = time.monotonic() - started

    rng = np.random.default_rng(0)
    kills, tries, finished = 0, 0, 0
    while kills < KILLS:
        tries += 1
        assert tries < 3 * KILLS, f"only {kills} of {tries} runs were still running to kill"
        change_the_folder(root, rng, serial)
        proc = index_process(home, root)
        time.sleep(float(rng.uniform(0.02, 1.25 * typical)))  # some get to finish
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        else:
            finished += 1
            assert proc.returncode == 0, proc.stderr.read()
        proc.wait(timeout=60)
        proc.stderr.close()

    final = index_process(home, root)
    _, err = final.communicate(timeout=300)
    assert final.returncode == 0, err

    check_library(home, root)
    db = sqlite3.connect(home / "catalog.db")
    try:
        current = {row[0] for row in db.execute("select filename from index_manifest")}
    finally:
        db.close()
    lock = IndexLock(home)
    lock.acquire()  # nothing holds it
    lock.release()
    left = [p for p in home.rglob("*") if p.name.endswith(".tmp") or "staging" in p.name]
    assert left == [], left
    # Only the generation the manifest names: none orphaned by a kill between the swap
    # and the old file's removal.
    assert {p.name for p in (home / "index").iterdir()} == current
    print(f"{kills} kills in {tries} runs ({finished} finished first; a run: {typical:.2f} s)")


def train_process(home, pairs) -> subprocess.Popen:
    return subprocess.Popen(
        [IMGSEARCH, "--home", str(home), "train", str(pairs), *TINY, "--out", "m"]
        + ["--epochs", "12", "--batch-size", "32", "--seed", "3", "--json"],
        # A checkpoint after every epoch, so that each kill has one to resume from.
        env={**clean_env(), "IMGSEARCH_CHECKPOINT_SECONDS": "0"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.faults
def test_kill_9_during_training_resumes_to_the_uninterrupted_model(tmp_path):
    from safetensors.numpy import load_file

    from indexer.synthetic import generate, write_pairs

    samples = generate(tmp_path / "pairs", 240, seed=5, size=64)
    pairs = tmp_path / "pairs" / "pairs.csv"
    write_pairs(samples, pairs)
    started = time.monotonic()
    out, err = train_process(tmp_path / "whole", pairs).communicate(timeout=600)
    assert json.loads(out)["resumed_from_epoch"] == 0, err
    whole_s = time.monotonic() - started

    home, rng = tmp_path / "killed", np.random.default_rng(2)
    checkpoint = home / "models" / ".m.checkpoint" / "state.json"

    def checkpointed() -> int:
        try:
            return json.loads(checkpoint.read_text())["epoch"]
        except (OSError, ValueError, KeyError):
            return 0

    epochs_at_kill = []
    for _ in range(5):
        # Each run gets one epoch further than the last checkpoint (so the run as a whole
        # moves on), then dies at a random moment of the next: mid-step, mid-validation
        # or mid-checkpoint.
        before, proc = checkpointed(), train_process(home, pairs)
        deadline = time.monotonic() + 300
        while checkpointed() <= before:
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(float(rng.uniform(0, 0.1 * whole_s)))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        epochs_at_kill.append(checkpointed())
    out, err = train_process(home, pairs).communicate(timeout=600)
    report = json.loads(out)
    assert report["resumed_from_epoch"] > 0, err  # it did resume, from a checkpoint
    a = load_file(tmp_path / "whole" / "models" / "m" / "open_clip_model.safetensors")
    b = load_file(home / "models" / "m" / "open_clip_model.safetensors")
    assert a.keys() == b.keys()
    worst = max(float(np.abs(a[k] - b[k]).max()) for k in a)
    assert worst < 1e-4, worst
    assert not checkpoint.parent.exists()  # a finished run removes its checkpoint
    print(f"5 kills, checkpointed epochs then: {epochs_at_kill}; largest weight gap {worst:g}")


def mounted_tmpfs(tmp_path, size: str):
    """A tmpfs of `size`: a disk that really fills up (ENOSPC from the kernel, in SQLite
    and in every file write), unlike an injected exception. Mounting needs root, which
    the test command has where it installs Chromium (tests/run.sh) and CI has."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)], capture_output=True
    )
    assert mounted.returncode == 0, (
        f"this test mounts a small tmpfs and needs root for it: {mounted.stderr!r}"
    )
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=True)


@pytest.fixture
def small_disk(tmp_path):
    """8 MiB: a catalog and index of a few hundred tiny photos fit, with little to spare."""
    yield from mounted_tmpfs(tmp_path, "8m")


@pytest.fixture
def training_disk(tmp_path):
    """192 MiB: a tiny model's training run (two 56 MB checkpoints while one replaces the
    other, a 14 MB model) fits, with little to spare."""
    yield from mounted_tmpfs(tmp_path, "192m")


def fill(disk, leave: int):
    """A filler file that leaves `leave` bytes free on `disk`."""
    filler = disk / "filler"
    filler.unlink(missing_ok=True)
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, free - leave))
    return filler


@pytest.mark.faults
def test_a_disk_that_fills_up_fails_in_one_line_and_loses_nothing(tmp_path, small_disk):
    root, home = tmp_path / "photos", small_disk / "home"
    for i in range(60):
        make_jpeg(root / f"p{i}.jpg", i)
    env = {**clean_env(), "IMGSEARCH_ENGINE": "torch"}  # the export has a disk test of its own
    cmd = [IMGSEARCH, "--home", str(home), "index", str(root), *TINY, "--quiet"]
    assert subprocess.run(cmd, env=env, capture_output=True).returncode == 0
    serial = [2000]
    sites = set()
    # Less and less room each time, so that the disk fills at a different write: the
    # catalog's commits, the index file, the manifest. Fine steps where the index file is
    # the last write that does not fit: the window is narrow since the catalog also keeps
    # the lexical index (FTS5), whose writes come first.
    for leave in (400_000, 240_000, 220_000, 200_000, 180_000, 160_000, 60_000, 20_000, 4_000):
        for _ in range(30):
            serial[0] += 1
            make_jpeg(root / f"n{serial[0]}.jpg", serial[0])
        filler = fill(small_disk, leave)
        run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        if run.returncode != 0:
            lines = run.stderr.strip().splitlines()
            assert len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
            assert lines[0].startswith("imgsearch: error: disk full while writing"), lines
            assert "nothing committed was lost" in lines[0]
            sites.add("catalog" if "the catalog at" in lines[0] else lines[0].split("/")[-2])
            # What was there before still opens and answers.
            db = sqlite3.connect(home / "catalog.db")
            assert db.execute("pragma integrity_check").fetchone()[0] == "ok"
            db.close()
            assert search_all(home)
        filler.unlink()  # space comes back
        again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        sizes = {str(p.relative_to(small_disk)): p.stat().st_size for p in small_disk.rglob("*")}
        assert again.returncode == 0, (again.stderr, sizes)
        check_library(home, root)
    assert len(sites) >= 2, sites  # the disk filled at more than one kind of write
    print("disk full while writing:", sorted(sites))


def test_every_shape_of_a_disk_failure_reads_as_one_line():
    import errno
    import sqlite3

    from sqlalchemy.exc import OperationalError

    from search.errors import storage_failure

    def chained(inner: BaseException) -> BaseException:
        try:
            try:
                raise inner
            except BaseException as exc:
                raise RuntimeError("while saving") from exc
        except RuntimeError as outer:
            return outer

    cases = {
        "disk full while writing at /lib/x.tmp": OSError(errno.ENOSPC, "No space", "/lib/x.tmp"),
        "disk quota exceeded while writing": OSError(errno.EDQUOT, "Quota"),
        "read-only disk while writing": chained(OSError(errno.EROFS, "Read-only")),
        "disk I/O error while writing the catalog at /lib/catalog.db": OperationalError(
            "COMMIT", {}, sqlite3.OperationalError("disk I/O error")
        ),
        "disk full while writing the catalog at /lib/catalog.db": chained(
            sqlite3.OperationalError("database or disk is full")
        ),
        "disk full while writing: free space": Exception(
            "Error while serializing: I/O error: No space left on device (os error 28)"
        ),
        "disk full while writing at /lib/index/.a.faiss.tmp": RuntimeError(
            "Error in write_index: write error in /lib/index/.a.faiss.tmp: 8110 != 30720 "
            "(No space left on device)"
        ),
    }
    for start, exc in cases.items():
        line = storage_failure(exc, "/lib/catalog.db")
        assert line is not None and line.startswith(start), (start, line)
        assert line.endswith("re-run; nothing committed was lost") and "\n" not in line
    for other in (OSError(errno.ENOENT, "gone"), ValueError("x"), RuntimeError("faiss: bad")):
        assert storage_failure(other, "/lib/catalog.db") is None


def test_a_killed_writers_temporary_files_go_and_a_live_ones_stay(tmp_path):
    from search.diskfiles import remove_dead_temps, replacing

    dead = subprocess.Popen(["true"])
    dead.wait()
    with replacing(tmp_path / "a.faiss") as mine:  # being written by this live process
        killed = tmp_path / f".b.faiss.{dead.pid}.x1y2.tmp"
        killed.write_bytes(b"half")
        other = tmp_path / "c.faiss.tmp"  # not ours: no pid in its name
        other.write_bytes(b"x")
        remove_dead_temps(tmp_path)
        assert mine.exists() and other.exists() and not killed.exists()
    assert (tmp_path / "a.faiss").exists() and not mine.exists()


def test_a_second_index_run_is_refused_in_one_line_naming_the_first(tmp_path):
    """RELIABILITY 28: the lock is the index run's, not only a lock object's."""
    root, home = tmp_path / "photos", tmp_path / "home"
    make_jpeg(root / "a.jpg", 1)
    with IndexLock(home):  # an index run of this process holds it
        out = subprocess.run(
            [IMGSEARCH, "--home", str(home), "index", str(root), *TINY, "--quiet"],
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert out.returncode == 1
    assert out.stderr.strip() == (
        f"imgsearch: error: another `imgsearch index` (pid {os.getpid()}) is running on "
        "this library; wait for it to finish"
    )


@pytest.mark.faults
def test_a_disk_that_fills_up_during_training_fails_in_one_line_and_resumes(
    tmp_path, training_disk
):
    from indexer.synthetic import generate, write_pairs

    samples = generate(tmp_path / "pairs", 160, seed=7, size=64)
    pairs = tmp_path / "pairs" / "pairs.csv"
    write_pairs(samples, pairs)
    home = training_disk / "home"
    cmd = [IMGSEARCH, "--home", str(home), "train", str(pairs), *TINY, "--out", "m"]
    cmd += ["--epochs", "4", "--batch-size", "32", "--json"]
    env = {**clean_env(), "IMGSEARCH_CHECKPOINT_SECONDS": "0"}
    failed = set()
    # Room for less and less: the disk fills at the first checkpoint or a later one.
    for leave in (150_000_000, 90_000_000, 40_000_000, 5_000_000):
        filler = fill(training_disk, leave)
        run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        if run.returncode != 0:
            lines = run.stderr.strip().splitlines()
            assert len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
            assert lines[0].startswith("imgsearch: error: disk full while writing"), lines
            failed.add(leave)
            models = home / "models"
            # Nothing half-written where models are listed: no model folder without its
            # sidecar, no leftover temporary folder.
            assert not (models / "m").exists() or (models / "m" / "imgsearch.json").is_file()
            assert not list(models.glob(".m.tmp*")), list(models.iterdir())
        filler.unlink()
        again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert again.returncode == 0, again.stderr
        assert (home / "models" / "m" / "imgsearch.json").is_file()
        shutil.rmtree(home / "models" / "m")
    assert failed, "the disk never filled: the sizes above no longer reach the writes"
    print("training failed on a full disk with", sorted(failed), "bytes left")

    # No checkpoint in a run this short: the disk fills at the final save (the weights,
    # then the curves and the sidecar).
    env["IMGSEARCH_CHECKPOINT_SECONDS"] = "3600"
    for leave in (8_000_000, 300_000):
        filler = fill(training_disk, leave)
        run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        lines = run.stderr.strip().splitlines()
        assert run.returncode != 0 and len(lines) == 1, run.stderr
        assert lines[0].startswith("imgsearch: error: disk full while writing"), lines
        models = home / "models"
        assert not (models / "m").exists(), list(models.iterdir())
        assert [p.name for p in models.iterdir() if p.name.startswith(".")] == []
        filler.unlink()
        again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert again.returncode == 0, again.stderr
        assert (models / "m" / "imgsearch.json").is_file()
        shutil.rmtree(models / "m")
        print(f"final save with {leave} bytes left: {lines[0]}")


@pytest.mark.faults
def test_a_full_disk_under_the_web_ui_caches_no_thumbnail_refuses_writes_and_serves(
    tmp_path, small_disk
):
    """Thumbnails are a cache: on a full disk each is served uncached (no temporary file
    left) and cached once there is room; a caption that cannot be committed is a 507 with
    the one line; searches, pages and originals go on."""
    from webui import create_app

    root = tmp_path / "photos"
    for i in range(12):
        make_jpeg(root / f"p{i}.jpg", i, size=(640, 480))
    with Library(tiny_settings(small_disk / "home")) as lib:
        sync(lib, [str(root)], progress=False)
        image_id = sorted(lib.catalog.filter_ids())[0]
        app = create_app(library=lib)
        client = app.test_client()
        headers = {"X-CSRF-Token": app.config["CSRF_TOKEN"], "Origin": "http://localhost"}
        thumbs = lib.settings.thumbs_dir

        filler = fill(small_disk, 0)
        r = client.get(f"/thumbs/{image_id}")
        assert r.status_code == 200 and r.mimetype == "image/jpeg" and len(r.data) > 1000
        assert not [p for p in thumbs.rglob("*") if p.is_file()]  # nothing cached, no temp
        codes = []
        for n in range(300):  # until SQLite needs a page the disk does not have
            r = client.post(
                f"/api/images/{image_id}/captions", json={"text": f"caption {n}"}, headers=headers
            )
            codes.append(r.status_code)
            if r.status_code == 507:
                break
        assert codes[-1] == 507 and set(codes) <= {200, 201, 507}, codes
        print(f"the disk refused caption {len(codes)}")
        line = r.get_json()["error"]
        assert line.startswith("disk full while writing the catalog at"), line
        assert client.get("/api/search", query_string={"q": "a photo"}).status_code == 200
        assert client.get(f"/files/{image_id}", buffered=True).status_code == 200
        assert client.get(f"/images/{image_id}").status_code == 200

        filler.unlink()
        assert client.get(f"/thumbs/{image_id}").status_code == 200
        cached = [p for p in thumbs.rglob("*") if p.is_file()]
        assert len(cached) == 1 and cached[0].name.startswith(f"{image_id}-"), cached
        r = client.post(f"/api/images/{image_id}/captions", json={"text": "fits"}, headers=headers)
        assert r.status_code in (200, 201)


def committed_images(home) -> dict[int, str]:
    try:
        db = sqlite3.connect(f"file:{home / 'catalog.db'}?mode=ro", uri=True)
    except sqlite3.OperationalError:
        return {}
    try:
        return dict(db.execute("select id, path from images").fetchall())
    except sqlite3.OperationalError:
        return {}  # not created yet
    finally:
        db.close()


@pytest.mark.faults
def test_ctrl_c_mid_run_keeps_what_was_committed_and_search_serves_it(tmp_path):
    """RELIABILITY 24: a real SIGINT once the first batches are committed, in a library's
    first run: one line, exit 130; `search` then answers from everything committed,
    nothing is marked deleted, and a re-run completes the rest."""
    root, home = tmp_path / "photos", tmp_path / "home"
    for i in range(600):
        make_jpeg(root / f"p{i}.jpg", i)
    proc = index_process(home, root)
    deadline = time.monotonic() + 120
    while len(committed_images(home)) < 64:  # two batches
        assert proc.poll() is None, "the run finished before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err == "imgsearch: interrupted; what was committed is kept, re-run to finish\n"

    committed = committed_images(home)
    assert 64 <= len(committed) < 600
    hits = search_all(home)
    assert {h["id"]: h["path"] for h in hits} == committed
    final = index_process(home, root)
    _, err = final.communicate(timeout=300)
    assert final.returncode == 0, err
    check_library(home, root)
    assert set(committed.items()) <= set(committed_images(home).items())  # ids kept
    print(f"interrupted with {len(committed)} of 600 committed")
