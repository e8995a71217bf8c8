"""The catalog on PostgreSQL, through the command line and a second serving process
(issue 17): `--catalog URL` / IMGSEARCH_CATALOG, words and vectors, a server that sees
another machine's index runs without a restart, and bad URLs in one line."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request

from imagetree import make_jpeg

from search.catalog.store import Catalog

IMGSEARCH = shutil.which("imgsearch", path=os.path.dirname(sys.executable)) or "imgsearch"
TINY = {
    "IMGSEARCH_MODEL": "imgsearch-tiny",
    "IMGSEARCH_PRETRAINED": "none",
    "IMGSEARCH_DEVICE": "cpu",
    "IMGSEARCH_ENGINE": "torch",
    "IMGSEARCH_WORKERS": "1",
}


def env(**extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("IMGSEARCH_")}
    return {**clean, "HF_HUB_OFFLINE": "1", **TINY, **extra}


def run(*args, check=True, **extra):
    proc = subprocess.run(
        [IMGSEARCH, *map(str, args)], capture_output=True, text=True, env=env(**extra), timeout=300
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def fetch(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=60) as reply:
        return json.loads(reply.read())


def test_a_library_on_postgresql_indexes_and_searches_by_vectors_and_words(pg_url, tmp_path):
    photos = tmp_path / "photos"
    for i in range(6):
        make_jpeg(photos / "2019 Lisbon" / f"{i}.jpg", i)
        make_jpeg(photos / "garden" / f"{i}.jpg", 10 + i)
    home = tmp_path / "home"
    run("--home", home, "--catalog", pg_url, "index", photos)
    # No SQLite file: everything went to the server.
    assert not (home / "catalog.db").exists()
    found = json.loads(
        run("--home", home, "search", "lisbon", "--json", IMGSEARCH_CATALOG=pg_url).stdout
    )
    hits = found["results"]
    assert len(hits) >= 6
    assert {h["path"] for h in hits[:6]} == {
        str(photos / "2019 Lisbon" / f"{i}.jpg") for i in range(6)
    }
    assert all("folder" in h["matched"] for h in hits[:6])
    words = json.loads(
        run(
            "--home", home, "--catalog", pg_url, "search", "lisbon", "--mode", "text", "--json"
        ).stdout
    )["results"]
    assert len(words) == 6
    status = json.loads(run("--home", home, "--catalog", pg_url, "status", "--json").stdout)
    assert status["images"] == 12
    # The same home without the URL is another (empty) library, in SQLite.
    alone = json.loads(run("--home", home, "status", "--json").stdout)
    assert alone["images"] == 0
    # Another machine (here: another library folder) indexing into this catalog is refused
    # in one line while a run holds it, and adds nothing.
    make_jpeg(photos / "late" / "0.jpg", 99)
    first = Catalog.open(pg_url)
    try:
        with first.index_run_lock():
            late = run("--home", tmp_path / "b", "--catalog", pg_url, "index", photos, check=False)
            assert late.returncode == 1
            assert late.stderr.count("\n") == 1 and "another `imgsearch index`" in late.stderr
            assert first.image_count() == 12
    finally:
        first.close()


def test_a_second_process_serving_the_same_catalog_follows_new_index_runs(pg_url, tmp_path):
    """Machine A indexes; machine B (another home: none of A's files) serves from the same
    PostgreSQL catalog and answers with A's newer runs without a restart."""
    photos = tmp_path / "photos"
    for i in range(5):
        make_jpeg(photos / "first" / f"{i}.jpg", i)
    a_home, b_home = tmp_path / "a", tmp_path / "b"
    run("--home", a_home, "--catalog", pg_url, "index", photos)
    serve = [IMGSEARCH, "--home", str(b_home), "--catalog", pg_url, "serve", "--port", "0"]
    proc = subprocess.Popen(serve, stderr=subprocess.PIPE, text=True, env=env())
    try:
        line = proc.stderr.readline()
        match = re.search(r"serving (http://127\.0\.0\.1:\d+/)", line)
        assert match, line
        base = match.group(1)
        deadline = time.monotonic() + 60
        while True:
            try:
                first = fetch(base + "api/search?q=photo&k=100")
                break
            except urllib.error.URLError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert len(first["results"]) == 5
        before = fetch(base + "api/status")["index"]["generation"]
        for i in range(4):
            make_jpeg(photos / "second" / f"{i}.jpg", 50 + i)
        run("--home", a_home, "--catalog", pg_url, "index")
        after = fetch(base + "api/search?q=photo&k=100")
        assert len(after["results"]) == 9
        assert {h["path"] for h in after["results"]} >= {
            str(photos / "second" / f"{i}.jpg") for i in range(4)
        }
        assert fetch(base + "api/status")["index"]["generation"] > before
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stderr.close()
    # Each machine's index files and their manifest are its own; the shared catalog names
    # none (a row there would name a file only one machine has).
    for home in (a_home, b_home):
        assert len(list((home / "index").glob("*.manifest.json"))) == 1
    catalog = Catalog.open(pg_url)
    try:
        assert catalog.manifest(catalog.get_setting("serving_model")) is None
    finally:
        catalog.close()


def test_a_bad_catalog_url_is_one_line_and_touches_nothing(tmp_path, pg_server):
    home = tmp_path / "home"
    for url, says in [
        ("mysql://x@localhost/db", "not supported"),
        ("no url at all", "not a database URL"),
        ("postgresql//me:secret@db/x", "not a database URL"),  # a colon missing
        ("postgresql://me:secret@db:port/x", "not a database URL"),
        ("postgresql+pg8000://me:secret@db/x", "driver is not supported"),
        # A port nothing listens on: refused at once, named without its password.
        (
            pg_server.url()
            .replace(str(pg_server.port), "1")
            .replace("imgsearch@", "imgsearch:secret@"),
            "cannot open catalog",
        ),
    ]:
        proc = run("--home", home, "--catalog", url, "status", check=False)
        assert proc.returncode != 0
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and says in lines[0], proc.stderr
        assert "secret" not in proc.stderr and "Traceback" not in proc.stderr
    assert not (home / "catalog.db").exists()
