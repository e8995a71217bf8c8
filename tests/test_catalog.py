"""The catalog: schema vs migrations, refusing newer catalogs, and the write/read contract."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import inspect

from search.catalog.lexical import described_elsewhere
from search.catalog.records import FailureData, ImageData
from search.catalog.schema import Base
from search.catalog.store import MIGRATIONS_DIR, Catalog
from search.errors import CatalogError, NotFound
from search.models.spec import ModelSpec

MODEL = "test-model/random:abc"
OTHER = "other-model/random:def"
DIM = 8
BASE_DATE = datetime(2020, 1, 1, 12, 0, 0)


# -- helpers ---------------------------------------------------------------------------------
@pytest.fixture
def cat(catalog_target):
    """A new catalog, on SQLite and on PostgreSQL in turn."""
    catalog = Catalog.open(catalog_target)
    try:
        yield catalog
    finally:
        catalog.close()


def img(root_id: int, path: str, *, day: int = 0, size: int = 100, h: str = "h") -> ImageData:
    return ImageData(
        root_id=root_id,
        path=path,
        size=size,
        mtime_ns=1_000 + day,
        content_hash=f"{h}-{path}",
        width=640,
        height=480,
        taken_at=None,
        date=BASE_DATE + timedelta(days=day),
    )


def unit_vectors(n: int, seed: int = 0, dim: int = DIM) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def prepared(cat: Catalog, *models: str) -> int:
    """A root with the given models registered; returns the root id."""
    for m in models or (MODEL,):
        cat.ensure_model(m, ModelSpec(m, None), DIM)
    return cat.add_root("/photos").id


def count(cat: Catalog, table: str) -> int:
    with cat.engine.connect() as conn:
        return conn.exec_driver_sql(f"select count(*) from {table}").scalar_one()


def file_state(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return hashlib.sha256(path.read_bytes()).hexdigest(), st.st_size, st.st_mtime_ns


# -- schema and migrations -------------------------------------------------------------------
def test_autogenerate_finds_no_difference_between_models_and_migrations(catalog_target) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    cat = Catalog.open(catalog_target)
    try:
        with cat.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"include_name": described_elsewhere})
            diff = compare_metadata(context, Base.metadata)
            assert diff == []
            # Every table of the models exists, plus Alembic's own and the lexical index
            # (an FTS5 table and the shadow tables SQLite keeps for it).
            tables = set(inspect(conn).get_table_names())
        lexical = {"lexical", "lexical_grams"}
        if cat.dialect == "sqlite":
            lexical |= {
                f"{fts}_{t}"
                for fts in ("lexical", "lexical_grams")
                for t in ("config", "content", "data", "docsize", "idx")
            }
        assert tables == set(Base.metadata.tables) | {"alembic_version"} | lexical
    finally:
        cat.close()


def test_fresh_catalog_is_at_head_in_wal_mode_with_foreign_keys(cat) -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    with cat.engine.connect() as conn:
        assert conn.exec_driver_sql("select version_num from alembic_version").scalar() == head
        if cat.dialect == "sqlite":  # PostgreSQL: always both
            assert conn.exec_driver_sql("pragma journal_mode").scalar().lower() == "wal"
            assert conn.exec_driver_sql("pragma foreign_keys").scalar() == 1


def test_images_table_uses_autoincrement(cat) -> None:
    with cat.engine.connect() as conn:
        if cat.dialect == "sqlite":
            sql = conn.exec_driver_sql(
                "select sql from sqlite_master where type='table' and name='images'"
            ).scalar_one()
            assert "AUTOINCREMENT" in sql.upper()
        else:  # a sequence, which never hands out a number twice
            sequence = "select pg_get_serial_sequence('images', 'id')"
            assert conn.exec_driver_sql(sequence).scalar() == "public.images_id_seq"


def test_downgrade_to_base_and_upgrade_again(catalog_target) -> None:
    """Every migration's downgrade runs, and upgrading afterwards rebuilds the schema."""
    from alembic import command
    from alembic.config import Config

    path = catalog_target
    Catalog.open(path).close()
    cat = Catalog.open(path)
    try:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        with cat.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "base")
        with cat.engine.connect() as conn:
            left = set(inspect(conn).get_table_names()) - {"alembic_version"}
        assert left == set()
    finally:
        cat.close()
    cat = Catalog.open(path)  # migrate() upgrades to head again
    try:
        with cat.engine.connect() as conn:
            assert set(inspect(conn).get_table_names()) >= set(Base.metadata.tables)
        assert cat.roots() == []
    finally:
        cat.close()


def test_newer_catalog_is_refused_and_not_modified(tmp_path) -> None:
    path = tmp_path / "catalog.db"
    cat = Catalog.open(path)
    root = prepared(cat)
    cat.write_batch(MODEL, [img(root, "/photos/a.jpg")], unit_vectors(1))
    cat.close()
    with sqlite3.connect(path) as conn:
        conn.execute("update alembic_version set version_num = '9999_future'")
    conn.close()
    before = file_state(path)

    with pytest.raises(CatalogError) as info:
        Catalog.open(path)
    # (tmp_path holds this test's name: look at the message without the path.)
    assert "newer" in str(info.value).replace(str(tmp_path), "")
    assert "9999_future" in str(info.value)

    assert file_state(path) == before
    with sqlite3.connect(path) as conn:
        assert conn.execute("select version_num from alembic_version").fetchall() == [
            ("9999_future",)
        ]
        assert conn.execute("select count(*) from images").fetchone() == (1,)
        assert conn.execute("select count(*) from embeddings").fetchone() == (1,)
    conn.close()
    # Refused every time, not only the first.
    with pytest.raises(CatalogError) as info:
        Catalog.open(path)
    assert "newer" in str(info.value).replace(str(tmp_path), "")
    assert file_state(path) == before


def test_a_file_that_is_not_a_database_is_a_catalog_error_naming_it(tmp_path) -> None:
    path = tmp_path / "catalog.db"
    path.write_bytes(b"this is not sqlite, just some bytes\n" * 200)
    before = file_state(path)
    with pytest.raises(CatalogError, match="catalog.db"):
        Catalog.open(path)
    assert file_state(path) == before


def _open_at_once(target: str, lock_statement: str, hold, release) -> list[str]:
    """Two processes opening the new catalog `target` (a Python expression) at once: both
    get as far as taking the schema lock (`lock_statement`), both having read that the
    catalog is new, while `hold()` keeps it; then `release()` lets them go together
    (deterministic, unlike starting them and hoping, or sleeping and hoping). Returns what
    each printed: "ok", or "ERR" and its error."""
    repo = Path(__file__).resolve().parent.parent
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(repo)!r})
        from pathlib import Path
        import alembic.command, alembic.config, alembic.runtime.migration, alembic.script
        from sqlalchemy import event
        from sqlalchemy.engine import Engine
        from search.catalog.store import Catalog

        @event.listens_for(Engine, "before_cursor_execute")
        def first_write(conn, cursor, statement, *args):
            if {lock_statement!r} in statement:
                print("writing", flush=True)  # read that the catalog is new; now waits

        print("ready", flush=True)
        try:
            Catalog.open({target}).close()
            print("ok", flush=True)
        except Exception as exc:
            print("ERR", str(exc).splitlines()[0], flush=True)
        """
    )
    hold()
    procs = [
        subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    try:
        for proc in procs:
            assert proc.stdout.readline().strip() == "ready"
        for proc in procs:
            assert proc.stdout.readline().strip() == "writing"
    finally:
        release()
        outputs = [proc.communicate(timeout=60)[0].strip() for proc in procs]
    return outputs


def test_two_processes_opening_a_new_catalog_at_once_both_succeed(tmp_path) -> None:
    path = tmp_path / "catalog.db"
    # SQLite's write lock, held by a connection of the test's own.
    gate = sqlite3.connect(path, isolation_level=None)

    def hold() -> None:
        gate.execute("pragma journal_mode=wal")
        gate.execute("begin immediate")

    def release() -> None:
        gate.execute("commit")
        gate.close()

    outputs = _open_at_once(f"Path({str(path)!r})", "BEGIN IMMEDIATE", hold, release)
    assert outputs == ["ok", "ok"]
    cat = Catalog.open(path)
    try:
        assert cat.roots() == []
    finally:
        cat.close()


def test_a_catalog_at_0001_with_data_upgrades_to_head_keeping_it(catalog_target) -> None:
    """0002 adds the manifest's params and recall columns, 0003 each vector's revision
    (its model's revision at upgrade time), 0004 the lexical index (filled from the rows
    there); rows written at 0001 survive."""
    from alembic import command
    from alembic.config import Config

    from search.catalog.backend import execute, make_engine
    from search.catalog.records import Manifest

    path = catalog_target
    if isinstance(path, Path):
        path.parent.mkdir(parents=True)
    engine = make_engine(path)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    vecs = unit_vectors(2, seed=3)
    when = "2020-01-01 12:00:00.000000"
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
        for sql, args in [
            ("insert into models values (?, ?, ?, ?, ?)", (MODEL, "{}", DIM, 4, when)),
            ("insert into roots values (1, '/photos', ?)", (when,)),
            *[
                (
                    "insert into images values (?, 1, ?, 10, 1, ?, 640, 480, null, ?, ?)",
                    (i, f"/photos/{i}.jpg", f"h{i}", when, when),
                )
                for i in (1, 2)
            ],
            *[
                ("insert into embeddings values (?, ?, ?)", (i, MODEL, vecs[i - 1].tobytes()))
                for i in (1, 2)
            ],
            (
                "insert into index_manifest values (?, 3, 'f.3.faiss', 'flat-ip', 2, ?, 4, ?)",
                (MODEL, "ab" * 32, when),
            ),
            ("insert into captions values (1, 2, 'a red bicycle', 'user', ?)", (when,)),
            ("insert into settings values ('active_model', '{\"model\": \"x\"}')", ()),
        ]:
            execute(conn)(sql, args)
    engine.dispose()

    cat = Catalog.open(path)
    try:
        with cat.engine.connect() as conn:
            assert conn.exec_driver_sql("select version_num from alembic_version").scalar() == (
                "0008"
            )
            columns = {c["name"] for c in inspect(conn).get_columns("index_manifest")}
            # Images from before signatures have none: `duplicates` makes them when asked.
            signed = conn.exec_driver_sql("select count(signature) from images").scalar()
            assert signed == 0
            # Everything catalogued before videos were is a photo, with no frames.
            videos = conn.exec_driver_sql("select count(duration) from images").scalar()
            assert videos == 0
            assert conn.exec_driver_sql("select count(*) from frames").scalar() == 0
        assert {"params", "recall_at_10"} <= columns
        assert cat.manifest(MODEL) == Manifest(
            MODEL, 3, "f.3.faiss", "flat-ip", 2, "ab" * 32, 4, BASE_DATE, None, None
        )
        got_ids, got = cat.vectors(MODEL)
        assert got_ids.tolist() == [1, 2]
        np.testing.assert_array_equal(got, vecs)
        # Written "at" the model's revision 4: new to an index built at 3, not to one at 4.
        assert cat.index_vectors(MODEL, since=3)[0].tolist() == [1, 2]
        assert cat.index_vectors(MODEL, since=4)[0].tolist() == []
        assert [(r.path, r.image_count) for r in cat.roots()] == [("/photos", 2)]
        assert [(c.image_id, c.text) for c in cat.captions()] == [(2, "a red bicycle")]
        # 0004's lexical index is filled from what was there: names, folders, captions.
        assert [h.id for h in cat.lexical_search(["bicycle"], 10)] == [2]
        assert [h.id for h in cat.lexical_search(["1", "jpg"], 10)] == [1]
        assert cat.fields_matched(["red"], [1, 2]) == {
            1: {},
            2: {"caption": "a \x02red\x03 bicycle"},
        }
        assert cat.get_setting("active_model") == '{"model": "x"}'
        # The new columns take values.
        tuned = Manifest(
            MODEL, 4, "f.4.faiss", "hnsw-ip", 2, "cd" * 32, 4, BASE_DATE, {"efSearch": 48}, 0.97
        )
        cat.set_manifest(tuned)
        assert cat.manifest(MODEL) == tuned
    finally:
        cat.close()


def test_reopening_migrates_again_and_keeps_data(catalog_target) -> None:
    path = catalog_target
    cat = Catalog.open(path)
    root = prepared(cat, MODEL, OTHER)
    images = [img(root, f"/photos/{i}.jpg", day=i) for i in range(5)]
    vecs = unit_vectors(5, seed=1)
    ids = cat.write_batch(MODEL, images, vecs, [FailureData(root, "/photos/bad.jpg", 3, 4, "bad")])
    cat.add_vectors(OTHER, ids[:2], unit_vectors(2, seed=2))
    cap = cat.add_caption(ids[0], "a red bicycle")
    cat.set_setting("active_model", '{"model": "x"}')
    models_before = cat.models()
    cat.close()

    for _ in range(2):
        cat = Catalog.open(path)
        try:
            assert [r.path for r in cat.roots()] == ["/photos"]
            assert cat.roots()[0].image_count == 5
            got_ids, got = cat.vectors(MODEL)
            assert got_ids.tolist() == ids
            np.testing.assert_array_equal(got, vecs)
            assert cat.vectors(OTHER)[0].tolist() == ids[:2]
            assert cat.captions() == [cap]
            assert [f.path for f in cat.failures()] == ["/photos/bad.jpg"]
            assert cat.get_setting("active_model") == '{"model": "x"}'
            assert sorted(cat.models(), key=lambda m: m.model_id) == sorted(
                models_before, key=lambda m: m.model_id
            )
            meta = cat.image(ids[3])
            assert (meta.path, meta.date, meta.width) == ("/photos/3.jpg", images[3].date, 640)
        finally:
            cat.close()


# -- writes --------------------------------------------------------------------------------
def test_write_batch_returns_ids_in_input_order_and_stores_metadata(cat) -> None:
    root = prepared(cat)
    images = [img(root, f"/photos/{n}.jpg", day=i) for i, n in enumerate("cab")]
    ids = cat.write_batch(MODEL, images, unit_vectors(3))
    assert len(set(ids)) == 3
    metas = cat.images(ids)
    assert [metas[i].path for i in ids] == [im.path for im in images]
    recs = cat.file_records(root)
    assert {p: r.id for p, r in recs.items()} == {im.path: i for im, i in zip(images, ids)}
    assert recs["/photos/a.jpg"].content_hash == "h-/photos/a.jpg"
    assert cat.image_count() == 3


def test_write_batch_needs_one_vector_per_image(cat) -> None:
    root = prepared(cat)
    with pytest.raises(ValueError):
        cat.write_batch(MODEL, [img(root, "/photos/a.jpg")], unit_vectors(2))
    assert cat.image_count() == 0


def test_upsert_by_path_keeps_id_and_replaces_vectors(cat) -> None:
    root = prepared(cat, MODEL, OTHER)
    first = cat.write_batch(
        MODEL, [img(root, "/photos/a.jpg"), img(root, "/photos/b.jpg")], unit_vectors(2, seed=1)
    )
    cat.add_vectors(OTHER, first, unit_vectors(2, seed=9))
    new_vec = unit_vectors(1, seed=2)
    again = cat.write_batch(MODEL, [img(root, "/photos/a.jpg", size=999)], new_vec)
    assert again == [first[0]]
    assert cat.image(first[0]).size == 999
    assert cat.image_count() == 2
    np.testing.assert_array_equal(cat.vector_of(first[0], MODEL), new_vec[0])
    # Exactly one vector per (image, model): replaced, not duplicated.
    ids, vecs = cat.vectors(MODEL)
    assert ids.tolist() == sorted(first)
    assert vecs.shape == (2, DIM)
    # The content changed, so the other model's vector of that image is gone; b keeps its.
    assert cat.vectors(OTHER)[0].tolist() == [first[1]]
    with pytest.raises(NotFound):
        cat.vector_of(first[0], OTHER)


def test_failures_are_recorded_then_cleared_when_the_file_succeeds(cat) -> None:
    root = prepared(cat)
    bad = FailureData(root, "/photos/bad.jpg", 10, 20, "truncated file")
    cat.write_batch(MODEL, [], np.zeros((0, DIM), np.float32), [bad])
    [info] = cat.failures()
    assert (info.path, info.reason) == ("/photos/bad.jpg", "truncated file")
    assert cat.failure_records(root) == {"/photos/bad.jpg": (10, 20)}
    assert cat.image_count() == 0

    # Recording the same path again replaces the row (unique path), with the new reason.
    cat.write_batch(
        MODEL,
        [],
        np.zeros((0, DIM), np.float32),
        [FailureData(root, "/photos/bad.jpg", 11, 21, "still bad")],
    )
    assert [(f.path, f.reason) for f in cat.failures()] == [("/photos/bad.jpg", "still bad")]

    [image_id] = cat.write_batch(MODEL, [img(root, "/photos/bad.jpg")], unit_vectors(1))
    assert cat.failures() == []
    assert cat.failure_records(root) == {}
    assert cat.image(image_id).path == "/photos/bad.jpg"


def test_a_good_image_that_later_fails_is_removed_and_listed(cat) -> None:
    root = prepared(cat)
    [a, b] = cat.write_batch(
        MODEL, [img(root, "/photos/a.jpg"), img(root, "/photos/b.jpg")], unit_vectors(2)
    )
    cat.add_caption(a, "soon gone")
    cat.write_batch(
        MODEL,
        [],
        np.zeros((0, DIM), np.float32),
        [FailureData(root, "/photos/a.jpg", 1, 2, "now corrupt")],
    )
    with pytest.raises(NotFound):
        cat.image(a)
    assert cat.vectors(MODEL)[0].tolist() == [b]
    assert cat.captions() == []
    assert [f.path for f in cat.failures()] == ["/photos/a.jpg"]


def test_remove_failures(cat) -> None:
    root = prepared(cat)
    cat.write_batch(
        MODEL,
        [],
        np.zeros((0, DIM), np.float32),
        [FailureData(root, f"/photos/{n}.jpg", 1, 2, "x") for n in "abc"],
    )
    cat.remove_failures(["/photos/a.jpg", "/photos/c.jpg"])
    assert [f.path for f in cat.failures()] == ["/photos/b.jpg"]
    cat.remove_failures([])
    assert len(cat.failures()) == 1


def test_remove_images_cascades_embeddings_and_captions(cat) -> None:
    root = prepared(cat, MODEL, OTHER)
    ids = cat.write_batch(MODEL, [img(root, f"/photos/{i}.jpg") for i in range(4)], unit_vectors(4))
    cat.add_vectors(OTHER, ids, unit_vectors(4, seed=5))
    for i in ids:
        cat.add_caption(i, f"caption {i}")
    cat.remove_images(ids[1:3])
    keep = [ids[0], ids[3]]
    assert sorted(cat.images(ids)) == keep
    assert cat.vectors(MODEL)[0].tolist() == keep
    assert cat.vectors(OTHER)[0].tolist() == keep
    assert sorted({c.image_id for c in cat.captions()}) == keep
    # Nothing orphaned at the SQL level either.
    assert count(cat, "embeddings") == 4
    assert count(cat, "captions") == 2
    cat.remove_images([])  # a no-op
    assert cat.image_count() == 2


def test_image_ids_are_never_reused_after_delete(cat) -> None:
    root = prepared(cat)
    ids = cat.write_batch(MODEL, [img(root, f"/photos/{i}.jpg") for i in range(3)], unit_vectors(3))
    top = max(ids)
    cat.remove_images([top])
    [new] = cat.write_batch(MODEL, [img(root, "/photos/new.jpg")], unit_vectors(1, seed=3))
    assert new > top
    # Also when the deleted image comes back under the same path.
    cat.remove_images([new])
    [back] = cat.write_batch(MODEL, [img(root, "/photos/new.jpg")], unit_vectors(1, seed=3))
    assert back > new
    # And when every image is gone.
    cat.remove_images(cat.filter_ids().tolist())
    [last] = cat.write_batch(MODEL, [img(root, "/photos/z.jpg")], unit_vectors(1))
    assert last > back


def test_move_images_keeps_ids_and_vectors(cat) -> None:
    root = prepared(cat)
    vecs = unit_vectors(1)
    [i] = cat.write_batch(MODEL, [img(root, "/photos/a.jpg")], vecs)
    other = cat.add_root("/elsewhere").id
    cat.move_images([(i, "/elsewhere/a2.jpg", other, 777)])
    meta = cat.image(i)
    assert (meta.path, meta.root_id, meta.mtime_ns) == ("/elsewhere/a2.jpg", other, 777)
    np.testing.assert_array_equal(cat.vector_of(i, MODEL), vecs[0])


def test_missing_embeddings_lists_images_without_a_vector_for_the_model(cat) -> None:
    root = prepared(cat, MODEL, OTHER)
    ids = cat.write_batch(MODEL, [img(root, f"/photos/{i}.jpg") for i in range(3)], unit_vectors(3))
    cat.add_vectors(OTHER, [ids[1]], unit_vectors(1))
    assert [r.id for r in cat.missing_embeddings(MODEL, root)] == []
    assert sorted(r.id for r in cat.missing_embeddings(OTHER, root)) == [ids[0], ids[2]]


# -- roots -----------------------------------------------------------------------------------
def test_add_root_is_idempotent_and_a_root_inside_a_root_is_covered(cat) -> None:
    photos = cat.add_root("/data/photos")
    assert cat.add_root("/data/photos").id == photos.id
    assert cat.add_root("/data/photos/2021/summer").id == photos.id
    assert cat.add_root("/data/photos/").id == photos.id
    # A sibling sharing a name prefix is not inside.
    sibling = cat.add_root("/data/photos-old")
    assert sibling.id != photos.id
    assert [r.path for r in cat.roots()] == ["/data/photos", "/data/photos-old"]


def test_a_new_parent_root_absorbs_child_roots_and_their_images(cat) -> None:
    cat.ensure_model(MODEL, ModelSpec(), DIM)
    a = cat.add_root("/data/photos/a").id
    b = cat.add_root("/data/photos/b").id
    other = cat.add_root("/data/photosX").id
    [ia] = cat.write_batch(MODEL, [img(a, "/data/photos/a/1.jpg")], unit_vectors(1))
    [ib] = cat.write_batch(MODEL, [img(b, "/data/photos/b/2.jpg")], unit_vectors(1, seed=1))
    [io] = cat.write_batch(MODEL, [img(other, "/data/photosX/3.jpg")], unit_vectors(1, seed=2))
    cat.write_batch(
        MODEL,
        [],
        np.zeros((0, DIM), np.float32),
        [FailureData(b, "/data/photos/b/bad.jpg", 1, 1, "bad")],
    )
    vecs_before = cat.vectors(MODEL)

    parent = cat.add_root("/data/photos")
    assert parent.id not in (a, b, other)
    roots = {r.path: r for r in cat.roots()}
    assert set(roots) == {"/data/photos", "/data/photosX"}
    assert roots["/data/photos"].image_count == 2
    assert roots["/data/photosX"].image_count == 1
    assert cat.image(ia).root_id == parent.id
    assert cat.image(ib).root_id == parent.id
    assert cat.image(io).root_id == other
    assert set(cat.file_records(parent.id)) == {"/data/photos/a/1.jpg", "/data/photos/b/2.jpg"}
    assert cat.failure_records(parent.id) == {"/data/photos/b/bad.jpg": (1, 1)}
    ids, vecs = cat.vectors(MODEL)
    np.testing.assert_array_equal(ids, vecs_before[0])
    np.testing.assert_array_equal(vecs, vecs_before[1])


# -- reads -----------------------------------------------------------------------------------
def test_filter_ids_by_path_prefix_treats_like_wildcards_literally(cat) -> None:
    root = prepared(cat)
    paths = [
        "/photos/100%_real/a.jpg",
        "/photos/100%_real/b.jpg",
        "/photos/100x_real/c.jpg",  # would match a LIKE '100%_real%' pattern ('%' wildcard)
        "/photos/100%Xreal/d.jpg",  # would match via the '_' wildcard
        "/photos/100%_REAL/e.jpg",  # case differs
        "/photos/été/f.jpg",
        "/photos/ete/g.jpg",
    ]
    ids = dict(
        zip(paths, cat.write_batch(MODEL, [img(root, p) for p in paths], unit_vectors(len(paths))))
    )

    def got(prefix):
        return sorted(cat.filter_ids(path_prefix=prefix).tolist())

    assert got("/photos/100%_real/") == sorted([ids[paths[0]], ids[paths[1]]])
    assert got("/photos/été/") == [ids["/photos/été/f.jpg"]]
    assert got("/photos/") == sorted(ids.values())
    assert got("/nowhere/") == []
    assert got(None) == sorted(ids.values())
    assert got("") == sorted(ids.values())
    assert cat.filter_ids(path_prefix="/photos/").dtype == np.int64


def test_filter_ids_by_date_after_inclusive_before_exclusive(cat) -> None:
    root = prepared(cat)
    ids = cat.write_batch(
        MODEL, [img(root, f"/photos/{d}.jpg", day=d) for d in range(5)], unit_vectors(5)
    )
    d = [BASE_DATE + timedelta(days=i) for i in range(5)]

    def got(**kw):
        return sorted(cat.filter_ids(**kw).tolist())

    assert got(after=d[2]) == ids[2:]
    assert got(before=d[2]) == ids[:2]
    assert got(after=d[1], before=d[3]) == ids[1:3]
    assert got(after=d[1] + timedelta(microseconds=1)) == ids[2:]
    assert got(after=d[4] + timedelta(seconds=1)) == []
    # Dates and prefix combine.
    assert got(path_prefix="/photos/3", after=d[1]) == [ids[3]]
    assert got(path_prefix="/photos/3", before=d[1]) == []


def test_vectors_sorted_by_id_equal_to_what_was_written_and_per_model(cat) -> None:
    root = prepared(cat, MODEL, OTHER)
    assert cat.vectors(MODEL)[0].size == 0
    first = unit_vectors(3, seed=1)
    second = unit_vectors(2, seed=2)
    ids1 = cat.write_batch(MODEL, [img(root, f"/photos/z{i}.jpg") for i in range(3)], first)
    ids2 = cat.write_batch(MODEL, [img(root, f"/photos/a{i}.jpg") for i in range(2)], second)
    other = unit_vectors(2, seed=3, dim=DIM)
    cat.add_vectors(OTHER, ids2[::-1], other)

    ids, vecs = cat.vectors(MODEL)
    assert ids.dtype == np.int64 and vecs.dtype == np.float32
    assert ids.tolist() == sorted(ids1 + ids2)
    expected = dict(zip(ids1 + ids2, np.concatenate([first, second])))
    np.testing.assert_array_equal(vecs, np.stack([expected[i] for i in ids.tolist()]))

    oids, ovecs = cat.vectors(OTHER)
    assert oids.tolist() == sorted(ids2)
    by_id = dict(zip(ids2[::-1], other))
    np.testing.assert_array_equal(ovecs, np.stack([by_id[i] for i in oids.tolist()]))
    # float64 input is stored as float32.
    [x] = cat.write_batch(MODEL, [img(root, "/photos/f64.jpg")], unit_vectors(1).astype(float))
    assert cat.vector_of(x, MODEL).dtype == np.float32


def test_models_and_revision_bumps(cat) -> None:
    cat.ensure_model(MODEL, ModelSpec("m", "none"), DIM)
    cat.ensure_model(MODEL, ModelSpec("ignored"), 999)  # already there: unchanged
    root = cat.add_root("/photos").id
    [info] = cat.models()
    assert (info.model_id, info.spec, info.dim, info.vectors) == (
        MODEL,
        ModelSpec("m", "none"),
        DIM,
        0,
    )

    def rev(m=MODEL):
        return cat.model(m).revision

    r0 = rev()
    ids = cat.write_batch(
        MODEL, [img(root, "/photos/a.jpg"), img(root, "/photos/b.jpg")], unit_vectors(2)
    )
    r1 = rev()
    assert r1 > r0
    assert cat.model(MODEL).vectors == 2

    cat.ensure_model(OTHER, ModelSpec("o"), DIM)
    o0 = rev(OTHER)
    cat.add_vectors(OTHER, ids, unit_vectors(2, seed=4))
    assert rev(OTHER) > o0
    assert rev() == r1  # another model's vectors do not touch this one
    assert {m.model_id: m.vectors for m in cat.models()} == {MODEL: 2, OTHER: 2}

    r2, o1 = rev(), rev(OTHER)
    cat.remove_images([ids[0]])  # deleting changes every model's set
    assert rev() > r2 and rev(OTHER) > o1
    r3, o2 = rev(), rev(OTHER)
    cat.write_batch(MODEL, [img(root, "/photos/b.jpg", size=5)], unit_vectors(1, seed=8))
    assert rev() > r3 and rev(OTHER) > o2  # b changed: its OTHER vector was dropped
    assert cat.model(OTHER).vectors == 0
    with pytest.raises(NotFound):
        cat.model("no-such-model")


def test_manifest_roundtrip(cat) -> None:
    from search.catalog.records import Manifest

    cat.ensure_model(MODEL, ModelSpec(), DIM)
    assert cat.manifest(MODEL) is None
    m1 = Manifest(MODEL, 1, "f.1.faiss", "flat-ip", 3, "ab" * 32, 4, BASE_DATE)
    cat.set_manifest(m1)
    assert cat.manifest(MODEL) == m1
    m2 = Manifest(MODEL, 2, "f.2.faiss", "flat-ip", 5, "cd" * 32, 7, BASE_DATE)
    cat.set_manifest(m2)
    assert cat.manifest(MODEL) == m2
    assert count(cat, "index_manifest") == 1


def test_settings_roundtrip(cat) -> None:
    assert cat.get_setting("k") is None
    cat.set_setting("k", "v1")
    cat.set_setting("k", "v2")
    assert cat.get_setting("k") == "v2"
    cat.set_setting("k", None)
    assert cat.get_setting("k") is None


def test_image_lookups_and_not_found(cat) -> None:
    root = prepared(cat)
    [i] = cat.write_batch(MODEL, [img(root, "/photos/a.jpg", day=3)], unit_vectors(1))
    meta = cat.image(i)
    assert (meta.id, meta.root_id, meta.path, meta.size) == (i, root, "/photos/a.jpg", 100)
    assert meta.date == BASE_DATE + timedelta(days=3) and meta.taken_at is None
    assert cat.images([i, i + 1000]) == {i: meta}
    assert cat.images([]) == {}
    with pytest.raises(NotFound):
        cat.image(i + 1000)
    with pytest.raises(NotFound):
        cat.vector_of(i + 1000, MODEL)


def test_images_lookup_of_many_ids(cat) -> None:
    root = prepared(cat)
    n = 1205  # more than one 500-id chunk
    ids = cat.write_batch(
        MODEL, [img(root, f"/photos/{i:05}.jpg") for i in range(n)], unit_vectors(n)
    )
    metas = cat.images(ids)
    assert len(metas) == n
    assert metas[ids[-1]].path == f"/photos/{n - 1:05}.jpg"
    cat.remove_images(ids[:1100])
    assert cat.image_count() == n - 1100


def test_captions_add_and_list(cat) -> None:
    root = prepared(cat)
    a, b = cat.write_batch(
        MODEL, [img(root, "/photos/a.jpg"), img(root, "/photos/b.jpg")], unit_vectors(2)
    )
    c1 = cat.add_caption(a, "a dog on a beach")
    c2 = cat.add_caption(b, "a cat", source="pairs")
    c3 = cat.add_caption(a, "another caption")
    assert (c1.image_id, c1.text, c1.source) == (a, "a dog on a beach", "user")
    assert c2.source == "pairs"
    assert cat.captions() == [c1, c2, c3]
    assert cat.captions(a) == [c1, c3]
    assert cat.captions(b) == [c2]
    with pytest.raises(NotFound):
        cat.add_caption(max(a, b) + 100, "nobody")
    assert len(cat.captions()) == 3


def test_postgresql_a_newer_catalog_is_refused_and_not_modified(pg_url) -> None:
    cat = Catalog.open(pg_url)
    root = prepared(cat)
    cat.write_batch(MODEL, [img(root, "/photos/a.jpg")], unit_vectors(1))
    with cat.engine.begin() as conn:
        conn.exec_driver_sql("update alembic_version set version_num = '9999_future'")
    cat.close()
    for _ in range(2):  # refused every time, not only the first
        with pytest.raises(CatalogError, match="newer.*9999_future"):
            Catalog.open(pg_url)
    from search.catalog.backend import make_engine

    engine = make_engine(pg_url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("select version_num from alembic_version").all() == [
            ("9999_future",)
        ]
        assert conn.exec_driver_sql("select count(*) from embeddings").scalar() == 1
    engine.dispose()


def test_postgresql_two_processes_opening_a_new_catalog_at_once_both_succeed(pg_url) -> None:
    """As the SQLite test above, with PostgreSQL's advisory lock as the gate."""
    from search.catalog.backend import _SCHEMA_LOCK, make_engine

    gate_engine = make_engine(pg_url)
    gate = gate_engine.connect()

    def hold() -> None:
        gate.exec_driver_sql(f"SELECT pg_advisory_lock({_SCHEMA_LOCK})")

    def release() -> None:
        gate.exec_driver_sql(f"SELECT pg_advisory_unlock({_SCHEMA_LOCK})")
        gate.close()
        gate_engine.dispose()

    outputs = _open_at_once(repr(pg_url), "pg_advisory_xact_lock", hold, release)
    assert outputs == ["ok", "ok"]
    cat = Catalog.open(pg_url)
    try:
        assert cat.roots() == []
        with cat.engine.connect() as conn:
            assert conn.exec_driver_sql("select count(*) from alembic_version").scalar() == 1
    finally:
        cat.close()
