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


@pytest.fixture
def settings(tmp_path) -> Settings:
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
