"""A real server (waitress, in a thread) answering queries from ten threads while index
runs add images and swap generations: at least REQUESTS requests, every one answered 200,
every hit naming an existing image, each new generation picked up without a restart."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from contextlib import contextmanager

from imagetree import make_jpeg
from tinylib import tiny_settings
from waitress.wasyncore import close_all

from indexer.sync.run import sync
from search.library import Library
from webui import create_app
from webui.commands import make_server

QUERIES = ["a red square", "blue sky", "green field", "dog", "night", "two circles"]
CLIENTS = 10
REQUESTS = 2000  # search, thumbnail and status requests, all clients together


@contextmanager
def running(app):
    """The app on waitress at a free loopback port, for as long as the block runs."""
    server = make_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=server.run, name="waitress", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        # Closed from inside its own loop (a trigger thunk): closing sockets from this
        # thread would race the select() there. The loop ends once its map is empty.
        server.trigger.pull_trigger(lambda: close_all(server._map))
        thread.join(10)
        server.task_dispatcher.shutdown()
        assert not thread.is_alive(), "the server did not stop"


def fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


def test_queries_during_an_index_run_never_fail_or_point_elsewhere(tmp_path):
    root = tmp_path / "photos"
    for i in range(12):
        make_jpeg(root / "first" / f"{i}.jpg", i)
    settings = tiny_settings(tmp_path / "home", workers=1)
    # Two libraries on one home, as `imgsearch index` and `imgsearch serve` would be:
    # separate catalog connections and index stores, the index lock between them.
    writer = Library(settings)
    reader = Library(settings)
    sync(writer, [str(root)], progress=False)
    first_generation = writer.catalog.manifest(writer.serving_model)
    statuses: Counter[int] = Counter()
    counting = threading.Lock()
    generations: set[int] = set()
    problems: list[str] = []
    done = threading.Event()
    batches = [0]

    def count(status: int) -> None:
        with counting:
            statuses[status] += 1

    def index_more() -> None:
        # One index run after another, each adding 8 photos and swapping in a new
        # generation, until the clients have made their requests (and at least 3 runs).
        try:
            while batches[0] < 3 or (sum(statuses.values()) < REQUESTS and batches[0] < 60):
                batch = batches[0]
                for i in range(8):
                    make_jpeg(root / f"batch{batch}" / f"{i}.jpg", 100 + 10 * batch + i)
                sync(writer, [], progress=False)
                batches[0] += 1
        finally:
            done.set()

    def query(base: str, worker: int) -> None:
        n = 0
        while not done.is_set() or n < 5:
            q = QUERIES[(worker + n) % len(QUERIES)]
            status, body = fetch(f"{base}/api/search?q={q.replace(' ', '+')}&k=100")
            count(status)
            if status != 200:
                problems.append(f"{status} {body[:200]!r}")
                continue
            hits = json.loads(body)["results"]
            for hit in hits:
                meta = writer.catalog.image(hit["id"])  # raises if the id names nothing
                if meta.path != hit["path"] or not os.path.isfile(hit["path"]):
                    problems.append(f"hit {hit} does not resolve to {meta.path}")
            thumb_status, _ = fetch(base + hits[n % len(hits)]["thumb_url"])
            count(thumb_status)
            status, body = fetch(f"{base}/api/status")
            count(status)
            if status == 200 and (index := json.loads(body)["index"]):
                generations.add(index["generation"])
            n += 1

    with running(create_app(library=reader)) as base:
        clients = [threading.Thread(target=query, args=(base, w)) for w in range(CLIENTS)]
        indexer = threading.Thread(target=index_more)
        for t in clients + [indexer]:
            t.start()
        for t in clients + [indexer]:
            t.join(600)
        assert not any(t.is_alive() for t in clients + [indexer])

        # The running server now serves the index the run finished, without a restart.
        status, body = fetch(f"{base}/api/search?q=anything&k=200")  # the web's most
        assert status == 200
        expected = 12 + 8 * batches[0]
        assert len(json.loads(body)["results"]) == min(expected, 200)
        final = json.loads(fetch(f"{base}/api/status")[1])["index"]
        assert final["count"] == expected
        assert final["generation"] >= first_generation.generation + batches[0]

    reader.close()
    writer.close()
    assert problems == []
    assert set(statuses) == {200}, statuses  # no request here is meant to be refused
    assert sum(statuses.values()) >= REQUESTS, statuses
    assert len(generations) >= 3, generations  # swaps happened while it was serving


def test_serve_command_runs_waitress_on_localhost(tmp_path):
    """`imgsearch serve` itself: binds 127.0.0.1 by default and answers the API."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMGSEARCH_")}
    cmd = [sys.executable, "-m", "search.cli", "--home", str(tmp_path / "home"), "serve"]
    proc = subprocess.Popen([*cmd, "--port", "0"], stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stderr.readline()
        match = re.search(r"serving (http://127\.0\.0\.1:\d+/)", line)
        assert match, line
        deadline = time.monotonic() + 30
        while True:
            try:
                status, body = fetch(match.group(1) + "api/status")
                break
            except urllib.error.URLError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert status == 200 and json.loads(body)["images"] == 0
        assert fetch(match.group(1))[0] == 200
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stderr.close()
