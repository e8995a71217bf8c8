"""Shared fixtures. Everything runs offline with the bundled tiny architecture."""

from __future__ import annotations

import os

# Before anything imports huggingface_hub: no test may touch the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.pop("IMGSEARCH_HOME", None)

import pytest  # noqa: E402
from tinylib import tiny_settings  # noqa: E402

from search.library import Library  # noqa: E402
from search.settings import Settings  # noqa: E402

TINY = {"model": "imgsearch-tiny", "pretrained": "none"}


def pytest_generate_tests(metafunc) -> None:
    """A module with `BOTH_CATALOGS = True` runs each test whose library comes from the
    `settings` fixture twice: on SQLite and on PostgreSQL (issue 17)."""
    both = getattr(metafunc.module, "BOTH_CATALOGS", False)
    if both and "settings" in metafunc.fixturenames:
        if metafunc.definition.get_closest_marker("sqlite_only"):
            return
        metafunc.parametrize("catalog_backend", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture
def catalog_backend(request) -> str:
    return getattr(request, "param", "sqlite")


@pytest.fixture
def settings(tmp_path, catalog_backend, request) -> Settings:
    if catalog_backend == "postgresql":
        return tiny_settings(tmp_path / "home", catalog=request.getfixturevalue("pg_url"))
    return tiny_settings(tmp_path / "home")


@pytest.fixture
def library(settings):
    with Library(settings) as lib:
        yield lib


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory):
    """One loaded tiny encoder for tests that only need to embed (loading costs seconds)."""
    from search.models.encoder import load_encoder
    from search.models.spec import resolve

    home = tmp_path_factory.mktemp("enc")
    source = resolve(
        TINY["model"], TINY["pretrained"], models_dir=home / "models", cache_dir=home / "cache"
    )
    return load_encoder(source, "cpu")


@pytest.fixture(scope="session")
def pg_server():
    """A PostgreSQL server for the session (tests/pgserver.py); skipped, saying why, only
    where PostgreSQL is not installed (tests/run.sh installs it where it can)."""
    from pgserver import Server, bin_dir

    if bin_dir() is None:
        pytest.skip(
            "PostgreSQL is not installed (apt-get install postgresql): the catalog's "
            "PostgreSQL tests did not run"
        )
    server = Server()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def pg_url(pg_server):
    """A SQLAlchemy URL of a new, empty PostgreSQL database."""
    url = pg_server.new_database()
    yield url
    pg_server.drop(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_target(request, tmp_path):
    """Where a catalog lives, for tests run on both: a SQLite file, or a PostgreSQL URL."""
    if request.param == "sqlite":
        return tmp_path / "home" / "catalog.db"
    return request.getfixturevalue("pg_url")
