"""Faults as the field has them (RELIABILITY.md): a real `kill -9` of a real `imgsearch
index` process at random moments, many times over, then a clean re-run.

Exceptions raised inside the process (the other tests' way of interrupting a run) unwind
through `finally` blocks and context managers; SIGKILL runs nothing. What must hold after
any number of them, once an uninterrupted run has finished: SQLite's integrity check, one
row per path, exactly the files on disk indexed, the index's ids the catalog's live ids,
no lock left held, no temporary file left behind.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time

import numpy as np
import pytest
from imagetree import make_jpeg
from test_cli import IMGSEARCH, clean_env
from tinylib import tiny_settings

from indexer.sync import sync
from search.library import Library
from search.lock import IndexLock

TINY = ["--model", "imgsearch-tiny", "--pretrained", "none", "--device", "cpu"]
KILLS = 30


def index_process(home, root) -> subprocess.Popen:
    return subprocess.Popen(
        [IMGSEARCH, "--home", str(home), "index", str(root), *TINY, "--quiet"],
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


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

    db = sqlite3.connect(home / "catalog.db")
    try:
        assert db.execute("pragma integrity_check").fetchone()[0] == "ok"
        dup = db.execute("select path from images group by path having count(*) > 1").fetchall()
        assert dup == []
        catalog = dict(db.execute("select id, path from images").fetchall())
        current = {row[0] for row in db.execute("select filename from index_manifest")}
    finally:
        db.close()
    on_disk = {str(p) for p in root.glob("*.jpg")}
    assert set(catalog.values()) == on_disk
    hits = search_all(home)
    assert len(hits) == len(on_disk)
    assert {h["id"]: h["path"] for h in hits} == catalog  # the index holds the live ids
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
