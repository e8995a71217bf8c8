"""The catalog reads one query needs, with the standard library's sqlite3.

A cold `imgsearch search` spent about a third of a second importing SQLAlchemy, more than
it spends opening the model and encoding the query. So a process that answers one query
(search.library.Library.for_one_query) reads a current SQLite catalog with these plain
statements; anything else it is asked — a stale index to rebuild, a write — goes to the
full Catalog, opened then. Each method returns what search.catalog.store.Catalog's method of the
same name returns; tests/test_catalogread.py holds the two equal on one catalog.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path

import numpy as np

from search.catalog import dupreads, lexical, tagreads
from search.catalog.records import FrameSet, ImageMeta, Manifest, ModelInfo
from search.errors import NotFound
from search.library import SERVING_MODEL
from search.models.spec import ModelSpec

# The newest migration, as search.catalog.store.SCHEMA_HEAD (which imports SQLAlchemy); a test
# holds the two equal.
SCHEMA = "0008"
_IMAGE = "id, root_id, path, size, mtime_ns, width, height, taken_at, date, duration"


def _when(raw: str | datetime | None) -> datetime | None:
    """A stored time: SQLite keeps a string, PostgreSQL hands back a datetime."""
    return raw if raw is None or isinstance(raw, datetime) else datetime.fromisoformat(raw)


def _stored(value: datetime) -> str:
    """A datetime as SQLAlchemy stores it in SQLite (strings compare in time order)."""
    return value.isoformat(sep=" ", timespec="microseconds")


class CatalogReader:
    dialect = "sqlite"

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn = conn
        self._full = None

    @classmethod
    def open(cls, path: Path) -> CatalogReader | None:
        """A reader of the catalog at `path`, or None when it is not there or not at the
        current schema (then the full Catalog opens it, migrating or refusing it)."""
        if not path.is_file():
            return None
        try:
            conn = sqlite3.connect(
                f"file:{path}?mode=ro", uri=True, timeout=30, check_same_thread=False
            )
        except sqlite3.Error:
            return None
        try:
            rows = conn.execute("SELECT version_num FROM alembic_version").fetchall()
        except sqlite3.Error:  # no such table, or not a database at all
            rows = []
        if rows != [(SCHEMA,)]:
            conn.close()
            return None
        return cls(path, conn)

    def close(self) -> None:
        self._conn.close()
        if self._full is not None:
            self._full.close()

    def __getattr__(self, name: str):
        """Everything else (writes, rebuild reads, listings) from the full Catalog."""
        if name.startswith("_"):
            raise AttributeError(name)
        if self._full is None:
            from search.catalog.store import Catalog

            self._full = Catalog.open(self.path)
        return getattr(self._full, name)

    def index_run_active(self) -> bool:
        return False  # a SQLite catalog's runs are seen by the library folder's file lock

    def _one(self, sql: str, *args):
        return self._conn.execute(sql, args).fetchone()

    def get_setting(self, key: str) -> str | None:
        row = self._one("SELECT value FROM settings WHERE key = ?", key)
        return None if row is None else row[0]

    def model(self, model_id: str) -> ModelInfo:
        row = self._one("SELECT spec, dim, revision FROM models WHERE model_id = ?", model_id)
        if row is None:
            raise NotFound(f"unknown model {model_id}")
        (count,) = self._one("SELECT count(*) FROM embeddings WHERE model_id = ?", model_id)
        return ModelInfo(model_id, ModelSpec.loads(row[0]), row[1], row[2], count)

    def model_revision(self, model_id: str) -> int:
        row = self._one("SELECT revision FROM models WHERE model_id = ?", model_id)
        if row is None:
            raise NotFound(f"unknown model {model_id}")
        return row[0]

    def manifest(self, model_id: str) -> Manifest | None:
        row = self._one(
            "SELECT model_id, generation, filename, kind, count, checksum, revision, built_at,"
            " params, recall_at_10 FROM index_manifest WHERE model_id = ?",
            model_id,
        )
        if row is None:
            return None
        params = None if row[8] is None else json.loads(row[8])
        return Manifest(*row[:7], _when(row[7]), params, row[9])

    def vector_of(self, image_id: int, model_id: str) -> np.ndarray:
        row = self._one(
            "SELECT vector FROM embeddings WHERE image_id = ? AND model_id = ?", image_id, model_id
        )
        if row is None:
            raise NotFound(f"image {image_id} has no vector for model {model_id}")
        return np.frombuffer(row[0], dtype="<f4").astype(np.float32)

    def images(self, ids: Iterable[int]) -> dict[int, ImageMeta]:
        return read_images(self._conn.execute, ids)

    def image(self, image_id: int) -> ImageMeta:
        return read_image(self._conn.execute, image_id)

    def frames_of(self, ids: Iterable[int], model_id: str) -> dict[int, FrameSet]:
        return read_frames(self._conn.execute, ids, model_id)

    def lexical_search(self, words: list[str], limit: int) -> list[lexical.LexicalHit]:
        return lexical.search(self._conn.execute, words, limit)

    def lexical_ids(self, words: list[str]) -> list[int]:
        return lexical.matching_ids(self._conn.execute, words)

    def lexical_count(self, words: list[str], most: int) -> int:
        return lexical.count(self._conn.execute, words, most)

    def fields_matched(self, words: list[str], ids: list[int]) -> dict[int, dict[str, str]]:
        return lexical.fields_matched(self._conn.execute, words, ids)

    def filter_ids(
        self,
        path_prefix: str | None = None,
        after: datetime | None = None,
        before: datetime | None = None,
    ) -> np.ndarray:
        return read_ids(self._conn.execute, path_prefix, after, before)

    def tagged_ids(self, names: Sequence[str], model_id: str) -> np.ndarray:
        return tagreads.tagged_ids(self._conn.execute, names, model_id)

    def image_tags(self, ids: Sequence[int], model_id: str) -> dict[int, list[str]]:
        return tagreads.image_tags(self._conn.execute, ids, model_id)

    def captioned(self) -> dict[int, str]:
        return tagreads.captioned(self._conn.execute)

    def captions_version(self) -> int:
        return tagreads.captions_version(self._conn.execute)

    def photo_groups(self, ids: Sequence[int]) -> dict[int, tuple[int, ...]]:
        return dupreads.photo_groups(self._conn.execute, ids)


# The image reads both catalogs make, in plain SQL: `execute` is sqlite3's
# Connection.execute here, SQLAlchemy's Connection.exec_driver_sql in the Catalog.
def read_images(execute: lexical.Execute, ids: Iterable[int]) -> dict[int, ImageMeta]:
    ids = [int(i) for i in ids]
    out: dict[int, ImageMeta] = {}
    for start in range(0, len(ids), 500):
        chunk = tuple(ids[start : start + 500])
        marks = ",".join("?" * len(chunk))
        for row in execute(f"SELECT {_IMAGE} FROM images WHERE id IN ({marks})", chunk):
            out[row[0]] = _meta(row)
    return out


def read_frames(execute: lexical.Execute, ids: Iterable[int], model_id: str) -> dict[int, FrameSet]:
    """image id → FrameSet of the videos among `ids`, for one model."""
    ids = [int(i) for i in ids]
    rows: dict[int, list] = {}
    for start in range(0, len(ids), 500):
        chunk = tuple(ids[start : start + 500])
        marks = ",".join("?" * len(chunk))
        sql = (
            f"SELECT image_id, t, vector FROM frames WHERE model_id = ? AND image_id IN ({marks})"
            " ORDER BY image_id, position"
        )
        for image_id, t, vector in execute(sql, (model_id, *chunk)):
            rows.setdefault(image_id, []).append((t, vector))
    return {
        image_id: FrameSet(
            tuple(t for t, _ in found),
            np.frombuffer(b"".join(v for _, v in found), dtype="<f4").reshape(len(found), -1),
        )
        for image_id, found in rows.items()
    }


def read_image(execute: lexical.Execute, image_id: int) -> ImageMeta:
    row = next(iter(execute(f"SELECT {_IMAGE} FROM images WHERE id = ?", (image_id,))), None)
    if row is None:
        raise NotFound(f"no image with id {image_id}")
    return _meta(row)


def read_ids(
    execute: lexical.Execute,
    path_prefix: str | None,
    after: datetime | None,
    before: datetime | None,
) -> np.ndarray:
    """The ids of the images under a path prefix and within dates."""
    where, args = [], []
    if path_prefix:
        # substr, not LIKE: % and _ are real characters in folder names.
        where.append("substr(path, 1, ?) = ?")
        args += [len(path_prefix), path_prefix]
    if after is not None:
        where.append("date >= ?")
        args.append(_stored(after))
    if before is not None:
        where.append("date < ?")
        args.append(_stored(before))
    sql = "SELECT id FROM images" + (" WHERE " + " AND ".join(where) if where else "")
    return np.fromiter((r[0] for r in execute(sql, tuple(args))), dtype=np.int64)


def _meta(row) -> ImageMeta:
    return ImageMeta(*row[:7], _when(row[7]), _when(row[8]), row[9])


def serving_model(path: Path) -> tuple[str, ModelSpec] | None:
    """(model id, spec) of the model searches use, or None: not known this way (no
    catalog yet, nothing indexed, a schema this does not read, a broken file); the
    catalog proper then answers, and reports what is wrong. Read before anything else
    by a cold query, which starts opening that model at once (search.models.onnx.choose)."""
    reader = CatalogReader.open(path)
    if reader is None:
        return None
    try:
        model_id = reader.get_setting(SERVING_MODEL)
        if model_id is None:
            return None
        row = reader._one("SELECT spec FROM models WHERE model_id = ?", model_id)
        spec = None if row is None else json.loads(row[0])
        return (model_id, ModelSpec.from_dict(spec)) if isinstance(spec, dict) else None
    except (sqlite3.Error, ValueError, TypeError):
        return None
    finally:
        reader.close()
