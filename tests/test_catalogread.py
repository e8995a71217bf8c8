"""search.catalog.reader answers as search.catalog.store does, on one catalog, without SQLAlchemy;
and a library opened for one query reads through it and falls back where it must."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from search.catalog.reader import SCHEMA, CatalogReader
from search.catalog.records import FailureData, ImageData, Manifest
from search.catalog.store import SCHEMA_HEAD, Catalog
from search.errors import NotFound
from search.library import SERVING_MODEL
from search.models.spec import ModelSpec

MODEL = "m/random:abc"
REPO = Path(__file__).resolve().parent.parent


def image(root_id: int, path: str, day: int, taken: bool) -> ImageData:
    date = datetime(2021, 3, 1 + day, 12, 30, 15, 123456)
    return ImageData(
        root_id, path, 100 + day, 10**18 + day, f"h{day}", 640, 480, date if taken else None, date
    )


@pytest.fixture
def both(tmp_path):
    path = tmp_path / "catalog.db"
    cat = Catalog.open(path)
    root = cat.add_root("/photos").id
    cat.ensure_model(MODEL, ModelSpec("imgsearch-tiny", "none"), 4)
    images = [image(root, f"/photos/{d}/{i}%_x.jpg", i, i % 2 == 0) for i, d in enumerate("aabbc")]
    vectors = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    cat.write_batch(MODEL, images, vectors, [FailureData(root, "/photos/bad.jpg", 1, 2, "broken")])
    cat.set_setting(SERVING_MODEL, MODEL)
    cat.set_manifest(
        Manifest(
            MODEL,
            3,
            "m.faiss",
            "hnsw",
            5,
            "abc",
            1,
            datetime(2021, 5, 1, 1, 2, 3, 4),
            {"efSearch": 16},
            0.97,
        )
    )
    reader = CatalogReader.open(path)
    assert reader is not None
    yield cat, reader
    reader.close()
    cat.close()


def test_schema_is_the_catalogs():
    assert SCHEMA == SCHEMA_HEAD


def test_reads_equal_the_catalogs(both):
    cat, reader = both
    assert reader.get_setting(SERVING_MODEL) == cat.get_setting(SERVING_MODEL) == MODEL
    assert reader.get_setting("nothing") is cat.get_setting("nothing") is None
    assert reader.model(MODEL) == cat.model(MODEL)
    assert reader.model_revision(MODEL) == cat.model_revision(MODEL)
    assert reader.manifest(MODEL) == cat.manifest(MODEL)
    assert reader.manifest("other") is cat.manifest("other") is None
    ids = cat.filter_ids().tolist()
    assert reader.images(ids + [999]) == cat.images(ids + [999])
    assert reader.image(ids[0]) == cat.image(ids[0])
    assert np.array_equal(reader.vector_of(ids[1], MODEL), cat.vector_of(ids[1], MODEL))
    for prefix in (None, "/photos/a/", "/photos/b/1%", "/photos/b/1_", "/nowhere"):
        for after in (None, datetime(2021, 3, 2), datetime(2021, 3, 2, 12, 30, 15, 123456)):
            for before in (None, datetime(2021, 3, 4), datetime(2021, 3, 4, 12, 30, 15, 123456)):
                assert np.array_equal(
                    reader.filter_ids(prefix, after, before), cat.filter_ids(prefix, after, before)
                ), (prefix, after, before)
    assert cat.lexical_count(["a"], 10) == 2 and cat.lexical_count(["photos"], 10) == 0  # root
    assert cat.lexical_count(["a"], 1) == reader.lexical_count(["a"], 1) == 1  # counted up to
    for words in (["photos"], ["a"], ["b", "jpg"], ["nothing"], []):
        assert reader.lexical_count(words, 10) == cat.lexical_count(words, 10), words
        assert sorted(reader.lexical_ids(words)) == sorted(cat.lexical_ids(words))
        assert reader.lexical_search(words, 100) == cat.lexical_search(words, 100)
    assert reader.captions_version() == cat.captions_version() == 0
    assert reader.captioned() == cat.captioned() == {}
    cat.add_caption(ids[0], "a red star")
    cat.add_caption(ids[2], "a dog")
    newest = cat.add_caption(ids[0], "on grass")
    assert (
        reader.captioned() == cat.captioned() == {ids[0]: "a red star\non grass", ids[2]: "a dog"}
    )
    assert reader.captions_version() == cat.captions_version() == newest.id


def test_missing_things_raise_as_the_catalog_does(both):
    cat, reader = both
    for call in (
        lambda c: c.model("other"),
        lambda c: c.model_revision("other"),
        lambda c: c.image(999),
        lambda c: c.vector_of(999, MODEL),
    ):
        with pytest.raises(NotFound) as ours:
            call(reader)
        with pytest.raises(NotFound) as theirs:
            call(cat)
        assert str(ours.value) == str(theirs.value)


def test_everything_else_goes_to_the_full_catalog(both):
    cat, reader = both
    assert [r.path for r in reader.roots()] == ["/photos"]  # read by the full Catalog
    reader.set_setting("k", "v")  # a write, too
    assert cat.get_setting("k") == reader.get_setting("k") == "v"


def test_not_current_or_missing_is_not_opened(tmp_path):
    import sqlite3

    assert CatalogReader.open(tmp_path / "none.db") is None
    path = tmp_path / "catalog.db"
    Catalog.open(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("update alembic_version set version_num = '0002'")
    conn.close()
    assert CatalogReader.open(path) is None


def test_a_one_query_library_never_imports_sqlalchemy_when_current(tmp_path):
    path = tmp_path / "home" / "catalog.db"
    path.parent.mkdir()
    cat = Catalog.open(path)
    cat.add_root("/photos")
    cat.close()
    code = (
        "import sys; from pathlib import Path; from search.settings import Settings; "
        "from search.library import Library; "
        f"lib = Library.for_one_query(Settings(home=Path({str(path.parent)!r}))); "
        "print(lib.serving_model, 'sqlalchemy' in sys.modules); "
        "lib.close()"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert out.stdout.split() == ["None", "False"]


def test_a_one_query_library_searches_as_the_full_one_stale_index_included(tmp_path):
    from imagetree import make_jpeg
    from tinylib import tiny_settings

    from indexer.sync.run import sync
    from search.library import Library
    from search.query.searcher import SearchRequest

    settings = tiny_settings(tmp_path / "home")
    for i in range(6):
        make_jpeg(tmp_path / "photos" / f"{i}.jpg", i)
    with Library(settings) as lib:
        sync(lib, [str(tmp_path / "photos")], progress=False)
        lib.catalog.remove_images([lib.catalog.filter_ids().tolist()[0]])  # index now stale
    request = SearchRequest(text="a red square", k=4, after=datetime(2000, 1, 1))
    with Library.for_one_query(settings) as fast:
        assert isinstance(fast.catalog, CatalogReader)
        ours = fast.searcher.search(request)
    with Library(settings) as lib:
        theirs = lib.searcher.search(request)
    assert [(h.id, h.path, h.date) for h in ours.hits] == [
        (h.id, h.path, h.date) for h in theirs.hits
    ]
    assert np.allclose([h.score for h in ours.hits], [h.score for h in theirs.hits], atol=1e-5)
