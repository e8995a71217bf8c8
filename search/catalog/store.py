"""The catalog: SQLite (WAL) or PostgreSQL (search.catalog.backend) through SQLAlchemy, the
library's source of truth.

Every public method takes and returns plain data (search.catalog.records); each write method is
one transaction, so an interrupted run keeps exactly what was committed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
from sqlalchemy import Engine, delete, func, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from search.catalog import backend, dupreads, tagreads
from search.catalog.dupstore import DuplicateStore, mark_pixels_changed
from search.catalog.lexical import LexicalHit
from search.catalog.reader import read_frames, read_ids, read_image, read_images
from search.catalog.records import (
    CaptionInfo,
    FailureData,
    FailureInfo,
    FileRecord,
    FrameSet,
    ImageData,
    ImageMeta,
    Manifest,
    ModelInfo,
    RootInfo,
    utcnow,
)
from search.catalog.schema import (
    Base,
    Caption,
    Embedding,
    Failure,
    Frame,
    Image,
    ImageText,
    IndexManifest,
    Model,
    Root,
    Setting,
)
from search.catalog.tagstore import TagStore
from search.catalog.textstore import TextStore
from search.codecs import CODEC_MISSING
from search.errors import CatalogError, NotFound
from search.models.spec import ModelSpec

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


# The newest migration in migrations/versions (a test holds the two in step). A catalog
# stamped with it, or a new one, needs nothing from Alembic, whose machinery costs a cold
# command a tenth to half a second to import, read its scripts and run them.
SCHEMA_HEAD = "0008"

# The columns of a FileRecord, in its field order.
_FILE_RECORD = (
    Image.id,
    Image.path,
    Image.size,
    Image.mtime_ns,
    Image.content_hash,
    Image.indexed_at,
    Image.pixel_hash,
)


def stored_revision(conn) -> str | None:
    """The revision the catalog is stamped with (None: new, or more than one head)."""
    if "alembic_version" not in backend.tables(conn):  # a new catalog
        return None
    rows = conn.exec_driver_sql("SELECT version_num FROM alembic_version").all()
    return rows[0][0] if len(rows) == 1 else None


def migrate(engine: Engine) -> None:
    """Bring the schema to head; refuse a catalog written by a newer version."""
    with engine.connect() as conn:
        current = stored_revision(conn)
        if current == SCHEMA_HEAD:
            return
        empty = current is None and not backend.tables(conn)
    if empty and _create_at_head(engine):
        return
    _migrate_with_alembic(engine)


def _create_at_head(engine: Engine) -> bool:
    """A new, empty catalog: the tables as the models describe them, stamped with the
    head revision (Alembic's own recipe for a database built from scratch, without
    importing Alembic; tests/test_coldstart.py holds the result equal to the migrations').
    False when another process created it first."""
    with engine.begin() as conn:
        backend.lock_schema(conn)  # as in _migrate_with_alembic
        if backend.tables(conn):
            return False
        Base.metadata.create_all(conn)
        # Not what the models describe (the lexical index: FTS5 or tsvector, triggers).
        for statement in backend.lexical(conn.dialect.name).HEAD_DDL:
            conn.exec_driver_sql(statement)
        conn.exec_driver_sql(
            "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
            "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"
        )
        backend.execute(conn)(
            "INSERT INTO alembic_version (version_num) VALUES (?)", (SCHEMA_HEAD,)
        )
    return True


def _migrate_with_alembic(engine: Engine) -> None:
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    script = ScriptDirectory.from_config(cfg)
    head = script.get_current_head()
    known = {r.revision for r in script.walk_revisions()}

    def current_revision(conn) -> str | None:
        current = MigrationContext.configure(conn).get_current_revision()
        if current is not None and current not in known:
            raise CatalogError(
                f"the catalog is from a newer imgsearch (schema {current}); "
                "upgrade imgsearch to open it"
            )
        return current

    with engine.connect() as conn:
        if current_revision(conn) == head:
            return
    with engine.begin() as conn:
        # Take the write lock before looking again: two processes opening a new catalog
        # at once would otherwise both try to create the tables.
        backend.lock_schema(conn)
        if current_revision(conn) != head:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")


class Catalog:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._lexical = backend.lexical(self.dialect)
        self._session = sessionmaker(engine, expire_on_commit=False)
        self.tags = TagStore(self._session, self._tx)
        self.duplicates = DuplicateStore(self._session, self._tx)
        self.texts = TextStore(self._session, self._tx)

    @classmethod
    def open(cls, target: Path | str) -> Catalog:
        """The catalog in SQLite file `target`, or at database URL `target`."""
        if isinstance(target, Path):
            target.parent.mkdir(parents=True, exist_ok=True)
        engine = backend.make_engine(target)
        try:
            migrate(engine)
        except CatalogError:
            engine.dispose()
            raise
        except Exception as exc:  # a corrupt file, a disk error, no server: say which
            engine.dispose()
            where = target if isinstance(target, Path) else engine.url.render_as_string()
            raise CatalogError(f"cannot open catalog {where}: {_first_line(exc)}") from exc
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    def index_run_lock(self):
        """Held for an index run: one at a time on a catalog several machines share."""
        return backend.index_run_lock(self.engine)

    def index_run_active(self) -> bool:
        """Another process's index run holds a shared catalog (SQLite: see IndexLock)."""
        return backend.index_run_active(self.engine)

    def _tx(self) -> Session:
        return self._session.begin()  # type: ignore[return-value]

    # -- settings -----------------------------------------------------------------------
    def get_setting(self, key: str) -> str | None:
        with self._session() as s:
            return s.scalar(select(Setting.value).where(Setting.key == key))

    def set_setting(self, key: str, value: str | None) -> None:
        with self._tx() as s:
            s.execute(delete(Setting).where(Setting.key == key))
            if value is not None:
                s.add(Setting(key=key, value=value))

    # -- roots --------------------------------------------------------------------------
    def add_root(self, path: str) -> RootInfo:
        """Add a folder. One inside an existing root is already covered (that root is
        returned); existing roots inside the new one are folded into it, images kept."""
        with self._tx() as s:
            roots = list(s.scalars(select(Root)))
            for root in roots:
                if root.path == path or is_inside(path, root.path):
                    return RootInfo(root.id, root.path, root.added_at)
            new = Root(path=path, added_at=utcnow())
            s.add(new)
            s.flush()
            for root in roots:
                if is_inside(root.path, path):
                    for table in (Image, Failure):
                        s.execute(
                            update(table).where(table.root_id == root.id).values(root_id=new.id)
                        )
                    s.delete(root)
            return RootInfo(new.id, new.path, new.added_at)

    def roots(self) -> list[RootInfo]:
        stmt = _with_count(Root, Root.id, Image.root_id).order_by(Root.id)
        with self._session() as s:
            return [RootInfo(r.id, r.path, r.added_at, n) for r, n in s.execute(stmt)]

    # -- what the indexer compares against the disk ---------------------------------------
    def file_records(self, root_id: int) -> dict[str, FileRecord]:
        stmt = select(*_FILE_RECORD).where(Image.root_id == root_id)
        with self._session() as s:
            return {row.path: FileRecord(*row) for row in s.execute(stmt)}

    def failure_records(self, root_id: int) -> dict[str, tuple[int, int]]:
        """The failures not worth another try while the file is unchanged: all but those
        waiting for a codec, which a later install makes readable."""
        stmt = select(Failure.path, Failure.size, Failure.mtime_ns).where(
            Failure.root_id == root_id, Failure.reason.not_like(f"{CODEC_MISSING}%")
        )
        with self._session() as s:
            return {p: (size, mt) for p, size, mt in s.execute(stmt)}

    def missing_embeddings(self, model_id: str, root_id: int) -> list[FileRecord]:
        has = select(Embedding.image_id).where(Embedding.model_id == model_id)
        stmt = select(*_FILE_RECORD).where(Image.root_id == root_id, Image.id.not_in(has))
        with self._session() as s:
            return [FileRecord(*row) for row in s.execute(stmt)]

    # -- writes ---------------------------------------------------------------------------
    def ensure_model(self, model_id: str, spec: ModelSpec, dim: int) -> None:
        with self._tx() as s:
            if s.get(Model, model_id) is None:
                s.add(
                    Model(
                        model_id=model_id,
                        spec=spec.dumps(),
                        dim=dim,
                        revision=0,
                        created_at=utcnow(),
                    )
                )

    def write_batch(
        self,
        model_id: str,
        images: Sequence[ImageData],
        vectors: np.ndarray,
        failures: Sequence[FailureData] = (),
        frames: Sequence[FrameSet | None] = (),
    ) -> list[int]:
        """Upsert images (by path) with their vectors and record failures, atomically.
        `frames`, beside `images` (or empty: no videos): each video's frames.

        An existing path keeps its id; its vectors (and frames) for other models are
        dropped because the file's content changed. Returns the image ids in input order.
        """
        if len(images) != len(vectors):
            raise ValueError("one vector per image")
        image_paths = [im.path for im in images]
        failed_paths = [f.path for f in failures]
        now = utcnow()
        ids: list[int] = []
        with self._tx() as s:
            if image_paths or failed_paths:
                s.execute(delete(Failure).where(Failure.path.in_(image_paths + failed_paths)))
            stmt = select(Image.path, Image.id).where(Image.path.in_(image_paths))
            existing = {path: image_id for path, image_id in s.execute(stmt)}
            if existing:
                replaced = list(existing.values())
                s.execute(delete(Embedding).where(Embedding.image_id.in_(replaced)))
                s.execute(delete(Frame).where(Frame.image_id.in_(replaced)))
                # New pixels: their text is read again (when reading text is on).
                s.execute(delete(ImageText).where(ImageText.image_id.in_(replaced)))
                self._bump_all_revisions(s)
            for im in images:
                values = _image_values(im, now)
                if im.path in existing:
                    image_id = existing[im.path]
                    s.execute(update(Image).where(Image.id == image_id).values(**values))
                else:
                    image_id = s.execute(insert(Image).values(**values)).inserted_primary_key[0]
                ids.append(image_id)
            if ids:
                revision = self._insert_vectors(s, model_id, ids, vectors)
                self._insert_frames(s, model_id, ids, frames, revision)
                mark_pixels_changed(s)
            # A failed file that used to be a good image is no longer searchable.
            if failed_paths:
                s.execute(delete(Image).where(Image.path.in_(failed_paths)))
                self._bump_all_revisions(s)
                mark_pixels_changed(s)
                s.execute(insert(Failure), [dict(vars(f), failed_at=now) for f in failures])
        return ids

    def add_vectors(
        self,
        model_id: str,
        image_ids: Sequence[int],
        vectors: np.ndarray,
        frames: Sequence[FrameSet | None] = (),
    ) -> None:
        """Vectors (and a video's frames) for already-catalogued images (re-embedding
        with another model)."""
        with self._tx() as s:
            for table in (Embedding, Frame):
                s.execute(
                    delete(table).where(
                        table.model_id == model_id, table.image_id.in_(list(image_ids))
                    )
                )
            revision = self._insert_vectors(s, model_id, image_ids, vectors)
            self._insert_frames(s, model_id, image_ids, frames, revision)

    def move_images(
        self, moves: Iterable[tuple[int, str, int, int]], *, checked_at: datetime | None = None
    ) -> None:
        """Renamed, moved or touched files whose bytes were found unchanged at `checked_at`
        (default: now): (id, path, root id, mtime_ns). Ids and vectors stay."""
        checked_at = checked_at or utcnow()
        with self._tx() as s:
            for image_id, path, root_id, mtime_ns in moves:
                s.execute(
                    update(Image)
                    .where(Image.id == image_id)
                    .values(path=path, root_id=root_id, mtime_ns=mtime_ns, indexed_at=checked_at)
                )

    def refresh_images(self, images: Sequence[ImageData]) -> None:
        """Changed files whose pixels are the same as catalogued (new metadata, say): their
        rows take the new size, time, hash, date and keywords; ids and vectors stay."""
        now = utcnow()
        with self._tx() as s:
            for im in images:
                values = _image_values(im, now)
                s.execute(update(Image).where(Image.path == im.path).values(**values))

    def unread_keywords(self, root_id: int) -> list[tuple[int, str]]:
        """(id, path) of the root's images whose embedded words were never read (catalogued
        before they were)."""
        stmt = select(Image.id, Image.path).where(
            Image.root_id == root_id, Image.keywords.is_(None)
        )
        with self._session() as s:
            return [tuple(row) for row in s.execute(stmt)]

    def set_keywords(self, words: Iterable[tuple[int, str]]) -> None:
        with self._tx() as s:
            for image_id, text in words:
                s.execute(update(Image).where(Image.id == image_id).values(keywords=text))

    def remove_images(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        with self._tx() as s:
            for start in range(0, len(ids), 500):
                s.execute(delete(Image).where(Image.id.in_(ids[start : start + 500])))
            self._bump_all_revisions(s)
            mark_pixels_changed(s)

    def remove_failures(self, paths: Sequence[str]) -> None:
        if paths:
            with self._tx() as s:
                s.execute(delete(Failure).where(Failure.path.in_(list(paths))))

    def _insert_vectors(
        self, s: Session, model_id: str, image_ids: Sequence[int], vectors: np.ndarray
    ) -> int:
        """Returns the revision the vectors carry."""
        revision = self._bump_revision(s, model_id)
        vecs = np.ascontiguousarray(vectors, dtype="<f4")
        s.execute(
            insert(Embedding),
            [
                {"image_id": i, "model_id": model_id, "vector": v.tobytes(), "revision": revision}
                for i, v in zip(image_ids, vecs)
            ],
        )
        return revision

    @staticmethod
    def _insert_frames(
        s: Session,
        model_id: str,
        image_ids: Sequence[int],
        frames: Sequence[FrameSet | None],
        revision: int,
    ) -> None:
        rows = [
            {
                "image_id": image_id,
                "model_id": model_id,
                "position": n,
                "t": float(t),
                "vector": np.ascontiguousarray(v, dtype="<f4").tobytes(),
                "revision": revision,
            }
            for image_id, video in zip(image_ids, frames)
            if video is not None
            for n, (t, v) in enumerate(zip(video.times, video.vectors))
        ]
        if rows:
            s.execute(insert(Frame), rows)

    @staticmethod
    def _bump_revision(s: Session, model_id: str) -> int:
        """The model's next revision, which this transaction's vectors carry."""
        s.execute(
            update(Model).where(Model.model_id == model_id).values(revision=Model.revision + 1)
        )
        return s.scalar(select(Model.revision).where(Model.model_id == model_id))

    @staticmethod
    def _bump_all_revisions(s: Session) -> None:
        s.execute(update(Model).values(revision=Model.revision + 1))

    # -- reads for search -----------------------------------------------------------------
    def vectors(self, model_id: str) -> tuple[np.ndarray, np.ndarray]:
        """All (ids, float32 matrix) of one model, ordered by image id."""
        return self._read_vectors(Embedding, Embedding.model_id == model_id)

    def _read_vectors(self, table, where) -> tuple[np.ndarray, np.ndarray]:
        """(image ids, vectors) of `table`'s rows matching `where` (Embedding, or Frame:
        a video's id once per frame, in time order), ordered by image id."""
        order = (table.image_id, table.position) if table is Frame else (table.image_id,)
        stmt = select(table.image_id, table.vector).where(where).order_by(*order)
        with self.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        if not rows:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        flat = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4")
        return ids, flat.reshape(len(rows), -1).astype(np.float32, copy=False)

    def index_vectors(
        self, model_id: str, since: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """What a model's index holds (written after revision `since`, if given): each
        photo's vector, and in place of each video's its frames' (the video's id repeated
        once per frame), ordered by id."""
        where = Embedding.model_id == model_id
        frames_where = Frame.model_id == model_id
        if since is not None:
            where &= Embedding.revision > since
            frames_where &= Frame.revision > since
        ids, vectors = self._read_vectors(Embedding, where)
        frame_ids, flat = self._read_vectors(Frame, frames_where)
        with self.engine.connect() as conn:
            videos = conn.execute(
                select(Frame.image_id).where(Frame.model_id == model_id).distinct()
            ).scalars()
            videos = np.fromiter(videos, dtype=np.int64)
        photos = ~np.isin(ids, videos)
        if not len(frame_ids):
            return ids[photos], vectors[photos]
        all_ids = np.concatenate([ids[photos], frame_ids])
        order = np.argsort(all_ids, kind="stable")
        stacked = np.concatenate([vectors[photos].reshape(-1, flat.shape[1]), flat])
        return all_ids[order], stacked[order]

    def index_ids(self, model_id: str) -> np.ndarray:
        """The ids of index_vectors (one per vector: a video's once per frame), ascending;
        read without the vectors."""
        frames = select(Frame.image_id).where(Frame.model_id == model_id)
        photos = select(Embedding.image_id).where(
            Embedding.model_id == model_id, ~Embedding.image_id.in_(frames)
        )
        with self.engine.connect() as conn:
            ids = [np.fromiter(conn.execute(q).scalars(), dtype=np.int64) for q in (photos, frames)]
        return np.sort(np.concatenate(ids))

    def frames_of(self, ids: Iterable[int], model_id: str) -> dict[int, FrameSet]:
        """The embedded frames of the videos among `ids`, for one model."""
        with self.engine.connect() as conn:
            return read_frames(backend.execute(conn), ids, model_id)

    def vector_of(self, image_id: int, model_id: str) -> np.ndarray:
        with self._session() as s:
            blob = s.scalar(
                select(Embedding.vector).where(
                    Embedding.image_id == image_id, Embedding.model_id == model_id
                )
            )
        if blob is None:
            raise NotFound(f"image {image_id} has no vector for model {model_id}")
        return np.frombuffer(blob, dtype="<f4").astype(np.float32)

    # Image reads in the reader's plain SQL (one statement each, no ORM objects built).
    def images(self, ids: Iterable[int]) -> dict[int, ImageMeta]:
        with self.engine.connect() as conn:
            return read_images(backend.execute(conn), ids)

    def image(self, image_id: int) -> ImageMeta:
        with self.engine.connect() as conn:
            return read_image(backend.execute(conn), image_id)

    def filter_ids(
        self,
        path_prefix: str | None = None,
        after: datetime | None = None,
        before: datetime | None = None,
    ) -> np.ndarray:
        with self.engine.connect() as conn:
            return read_ids(backend.execute(conn), path_prefix, after, before)

    def lexical_search(self, words: list[str], limit: int) -> list[LexicalHit]:
        with self.engine.connect() as conn:
            return self._lexical.search(conn.exec_driver_sql, words, limit)

    def lexical_ids(self, words: list[str]) -> list[int]:
        with self.engine.connect() as conn:
            # The driver's own cursor: SQLAlchemy's row-by-row fetch of ten thousand ids
            # costs more than the query.
            raw = conn.connection.dbapi_connection
            return self._lexical.matching_ids(lambda q, p: raw.execute(q, p).fetchall(), words)

    def lexical_count(self, words: list[str], most: int) -> int:
        with self.engine.connect() as conn:
            return self._lexical.count(conn.exec_driver_sql, words, most)

    def fields_matched(self, words: list[str], ids: list[int]) -> dict[int, dict[str, str]]:
        with self.engine.connect() as conn:
            return self._lexical.fields_matched(conn.exec_driver_sql, words, ids)

    def tagged_ids(self, names: Sequence[str], model_id: str) -> np.ndarray:
        with self.engine.connect() as conn:
            return tagreads.tagged_ids(backend.execute(conn), names, model_id)

    def image_tags(self, ids: Sequence[int], model_id: str) -> dict[int, list[str]]:
        with self.engine.connect() as conn:
            return tagreads.image_tags(backend.execute(conn), ids, model_id)

    def captioned(self) -> dict[int, str]:
        """Every captioned image's captions, joined by new lines."""
        with self.engine.connect() as conn:
            return tagreads.captioned(backend.execute(conn))

    def captions_version(self) -> int:
        """What changes when a caption is added (search.catalog.tagreads)."""
        with self.engine.connect() as conn:
            return tagreads.captions_version(backend.execute(conn))

    def photo_groups(self, ids: Sequence[int]) -> dict[int, tuple[int, ...]]:
        with self.engine.connect() as conn:
            return dupreads.photo_groups(backend.execute(conn), ids)

    def image_count(self) -> int:
        with self._session() as s:
            return s.scalar(select(func.count()).select_from(Image)) or 0

    def failures(self) -> list[FailureInfo]:
        with self._session() as s:
            rows = s.scalars(select(Failure).order_by(Failure.path))
            return [FailureInfo(f.path, f.reason, f.failed_at) for f in rows]

    # -- models and index manifests -------------------------------------------------------
    def models(self) -> list[ModelInfo]:
        stmt = _with_count(Model, Model.model_id, Embedding.model_id)
        with self._session() as s:
            return [
                ModelInfo(m.model_id, ModelSpec.loads(m.spec), m.dim, m.revision, n)
                for m, n in s.execute(stmt)
            ]

    def model(self, model_id: str) -> ModelInfo:
        with self._session() as s:
            m = s.get(Model, model_id)
            if m is None:
                raise NotFound(f"unknown model {model_id}")
            count = s.scalar(
                select(func.count()).select_from(Embedding).where(Embedding.model_id == model_id)
            )
            spec = ModelSpec.loads(m.spec)
            return ModelInfo(m.model_id, spec, m.dim, m.revision, count or 0)

    def model_revision(self, model_id: str) -> int:
        """Cheap: read on every search to see whether the loaded index is current."""
        with self._session() as s:
            revision = s.scalar(select(Model.revision).where(Model.model_id == model_id))
        if revision is None:
            raise NotFound(f"unknown model {model_id}")
        return revision

    def manifest(self, model_id: str) -> Manifest | None:
        with self._session() as s:
            m = s.get(IndexManifest, model_id)
            return None if m is None else _manifest(m)

    def set_manifest(self, manifest: Manifest) -> None:
        with self._tx() as s:
            params = (
                None if manifest.params is None else json.dumps(manifest.params, sort_keys=True)
            )
            s.merge(IndexManifest(**{**vars(manifest), "params": params}))

    # -- captions -------------------------------------------------------------------------
    def add_caption(self, image_id: int, text: str, source: str = "user") -> CaptionInfo:
        with self._tx() as s:
            if s.get(Image, image_id) is None:
                raise NotFound(f"no image with id {image_id}")
            cap = Caption(image_id=image_id, text=text, source=source, created_at=utcnow())
            s.add(cap)
            s.flush()
            return CaptionInfo(cap.id, cap.image_id, cap.text, cap.source, cap.created_at)

    def captions(self, image_id: int | None = None) -> list[CaptionInfo]:
        stmt = select(Caption).order_by(Caption.id)
        if image_id is not None:
            stmt = stmt.where(Caption.image_id == image_id)
        with self._session() as s:
            return [
                CaptionInfo(c.id, c.image_id, c.text, c.source, c.created_at)
                for c in s.scalars(stmt)
            ]


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def is_inside(path: str, root: str) -> bool:
    """Whether `path` is below the folder `root` (the rule add_root folds roots by)."""
    return path.startswith(root.rstrip("/") + "/")


def _with_count(entity, key, counted):
    """`entity`'s rows, each with the number of rows whose column `counted` holds its
    `key` (0 where none do)."""
    counts = select(counted, func.count().label("n")).group_by(counted).subquery()
    return select(entity, func.coalesce(counts.c.n, 0)).outerjoin(
        counts, counts.c[counted.key] == key
    )


def _image_values(im: ImageData, now: datetime) -> dict:
    """An ImageData as the images row's columns: the read's start is its indexed_at."""
    values = dict(vars(im))
    values["indexed_at"] = values.pop("read_at") or now
    return values


def _manifest(m: IndexManifest) -> Manifest:
    return Manifest(
        m.model_id,
        m.generation,
        m.filename,
        m.kind,
        m.count,
        m.checksum,
        m.revision,
        m.built_at,
        None if m.params is None else json.loads(m.params),
        m.recall_at_10,
    )
