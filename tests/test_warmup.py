"""The server loads the query model as it starts (webui.warmup): the page answers
meanwhile, /api/status says when it is done, and the first search is then fast."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from imagetree import make_jpeg
from tinylib import tiny_settings

from indexer.sync.run import sync
from search.library import Library
from webui import create_app


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A tiny library, indexed with engine auto (so it has its ONNX export)."""
    base = tmp_path_factory.mktemp("warm")
    for i in range(8):
        make_jpeg(base / "photos" / f"{i}.jpg", i)
    settings = tiny_settings(base / "home", engine="auto")
    with Library(settings) as lib:
        assert sync(lib, [str(base / "photos")], progress=False).exported
    return settings


def wait_ready(client, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        warm = client.get("/api/status").get_json()["warm_up"]
        if warm["state"] not in ("loading", "off"):
            return warm
        time.sleep(0.02)
    raise AssertionError("warm-up did not finish")


def test_first_search_after_warm_up_is_fast(home, caplog):
    caplog.set_level(logging.INFO, logger="webui.warmup")
    with Library(home) as lib:
        client = create_app(library=lib).test_client()
        warm = wait_ready(client)
        assert (warm["state"], warm["engine"]) == ("ready", "onnx"), warm
        assert warm["model_id"] == lib.searcher.serving_model()
        started = time.perf_counter()
        response = client.get("/api/search?q=a+dog+in+the+snow&k=5")
        elapsed = time.perf_counter() - started
        assert response.status_code == 200 and len(response.get_json()["results"]) == 5
        assert elapsed <= 0.1, f"first search after warm-up took {elapsed * 1000:.0f} ms"
    assert any("model ready for search" in r.getMessage() for r in caplog.records)


def test_warm_up_loads_the_torch_model_without_an_export(home):
    # (Not timed: in one pytest process torch's OpenMP threads, started by another
    # thread without OMP_WAIT_POLICY=PASSIVE, which `imgsearch` sets, make it noisy.)
    with Library(home.with_(engine="torch")) as lib:
        client = create_app(library=lib).test_client()
        warm = wait_ready(client)
        assert (warm["state"], warm["engine"]) == ("ready", "torch"), warm
        assert client.get("/api/search?q=a+dog&k=5").status_code == 200


def test_pages_answer_while_the_model_loads(home, monkeypatch):
    gate = threading.Event()
    with Library(home) as lib:
        load = lib.load_encoder
        monkeypatch.setattr(lib.searcher, "_load_encoder", lambda m: gate.wait(30) and load(m))
        app = create_app(library=lib)
        client = app.test_client()
        assert client.get("/api/status").get_json()["warm_up"]["state"] == "loading"
        assert client.get("/").status_code == 200
        gate.set()
        assert wait_ready(client)["state"] == "ready"
        # Kept for as long as the server runs: the same encoder answers every search.
        encoder = lib.searcher.encoder(lib.searcher.serving_model())
        client.get("/api/search?q=cat")
        assert lib.searcher.encoder(lib.searcher.serving_model()) is encoder


def test_nothing_indexed_is_idle_and_warm_up_can_be_off(tmp_path):
    with Library(tiny_settings(tmp_path / "home")) as lib:
        client = create_app(library=lib).test_client()
        assert wait_ready(client)["state"] == "idle"
        off = create_app(library=lib, warm_up=False).extensions["imgsearch.warmup"]
        assert off.status()["state"] == "off"
