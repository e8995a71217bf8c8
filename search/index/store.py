"""FAISS index files per model: generations on disk, a manifest row in the catalog.

The catalog holds the vectors; an index file is a cache of them. A file that is missing,
fails its checksum or disagrees with its manifest is rebuilt, never served. Which kind of
index (exact or approximate) and its tuning are search.index.ann's choice, under an IndexPolicy.

An approximate index that a sync changed only a little is updated, not rebuilt: building
HNSW over a million vectors takes minutes, adding the day's photos to it a moment. Each
vector carries the revision that wrote it, so what changed since the manifest's revision is
one indexed query.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from search.catalog.records import Manifest, utcnow
from search.diskfiles import remove_dead_temps, replacing
from search.errors import storage_failure
from search.index.ann import EXACT, BuiltIndex, IndexPolicy, build_index, choose_factory
from search.index.lock import IndexLock

if TYPE_CHECKING:  # SQLAlchemy: a one-query process may never need it (search.catalog.reader)
    from search.catalog.store import Catalog
    from search.index.vectors import VectorIndex

# An update touching more of the index than this share (or leaving more HNSW nodes blanked)
# builds anew instead: the graph and its tuned parameter were measured for the index as
# built, and blanked nodes cost memory and search time until then.
MAX_UPDATE_SHARE = 0.1


def _slug(model_id: str) -> str:
    readable = re.sub(r"[^A-Za-z0-9]+", "_", model_id).strip("_")[:60]
    return f"{readable}-{hashlib.sha256(model_id.encode()).hexdigest()[:8]}"


def _manifest(
    model_id: str, generation: int, filename: str, checksum: str, revision: int, built: BuiltIndex
) -> Manifest:
    """The manifest of a built index (filename and checksum empty: not saved)."""
    index = built.index
    return Manifest(
        model_id,
        generation,
        filename,
        index.kind,
        len(index),
        checksum,
        revision,
        utcnow(),
        built.params,
        built.recall_at_10,
    )


class FolderManifests:
    """Manifests kept beside the index files, one JSON file a model: for a catalog several
    machines share, where each machine's files are its own (a manifest row in the shared
    catalog would name a file only one machine has, and each would rebuild the other's)."""

    def __init__(self, index_dir: Path) -> None:
        self.index_dir = index_dir

    def _path(self, model_id: str) -> Path:
        return self.index_dir / f"{_slug(model_id)}.manifest.json"

    def manifest(self, model_id: str) -> Manifest | None:
        try:
            doc = json.loads(self._path(model_id).read_text(encoding="utf-8"))
            doc["built_at"] = datetime.fromisoformat(doc["built_at"])
            return Manifest(**doc)
        except (OSError, ValueError, TypeError, KeyError):
            return None  # none yet, or damaged: the index is built again

    def set_manifest(self, manifest: Manifest) -> None:
        doc = {**vars(manifest), "built_at": manifest.built_at.isoformat()}
        with replacing(self._path(manifest.model_id)) as tmp:
            tmp.write_text(json.dumps(doc), encoding="utf-8")


class IndexStore:
    def __init__(
        self,
        catalog: Catalog,
        index_dir: Path,
        lock: IndexLock | None = None,
        policy: IndexPolicy | None = None,
    ) -> None:
        self.catalog = catalog
        self.index_dir = index_dir
        # Where the manifests live: the catalog, which a SQLite library's files go with;
        # beside the files for a database server's catalog (FolderManifests).
        shared = catalog.dialect != "sqlite"
        self.manifests = FolderManifests(index_dir) if shared else catalog
        self.lock = lock
        self.policy = policy or IndexPolicy()
        # Readers in several threads (the web UI) share one loaded index per model.
        self._loaded: dict[str, tuple[Manifest, VectorIndex]] = {}
        self._mutex = threading.Lock()
        self._build_lock = threading.Lock()

    def rebuild(self, model_id: str, *, full: bool = False) -> Manifest:
        """Write a new generation from the catalog's vectors and point the manifest at it:
        the current approximate index updated when little changed, else built anew."""
        # One at a time: web UI threads that all find the index stale must not each build
        # it (and race for the next generation's file name); the later ones find it done.
        with self._build_lock:
            current = self.manifests.manifest(model_id)
            if not full and current is not None and self._fresh(current):
                with self._mutex:
                    cached = self._loaded.get(model_id)
                if cached is not None and cached[0].checksum == current.checksum:
                    return current
            return self._rebuild(model_id, current, full)

    def _rebuild(self, model_id: str, old: Manifest | None, full: bool) -> Manifest:
        revision = self.catalog.model_revision(model_id)
        built = None if full or old is None else self._updated(old)
        if built is None:
            ids, vectors = self.catalog.index_vectors(model_id)
            built = build_index(ids, vectors, self.policy)
        index = built.index
        generation = (old.generation + 1) if old else 1
        filename = f"{_slug(model_id)}.{generation}.faiss"
        remove_dead_temps(self.index_dir)
        checksum = index.save(self.index_dir / filename)
        manifest = _manifest(model_id, generation, filename, checksum, revision, built)
        self.manifests.set_manifest(manifest)
        if old and old.filename != filename:
            # Readers that loaded the old file hold it in memory; the file itself can go.
            (self.index_dir / old.filename).unlink(missing_ok=True)
        with self._mutex:
            self._loaded[model_id] = (manifest, index)
        return manifest

    def _updated(self, old: Manifest) -> BuiltIndex | None:
        """The old generation with what changed since applied, or None: build anew."""
        factory = (old.params or {}).get("factory")
        if factory == EXACT:
            return None  # an exact index builds in well under a second
        # Ids repeat (a video's, once per frame): what changed is counted in ids, what
        # the index holds in vectors.
        current = self.catalog.index_ids(old.model_id)
        dim = self.catalog.model(old.model_id).dim
        if choose_factory(len(current), dim, self.policy) != factory:
            return None  # the library outgrew (or shrank below) this kind of index
        # A copy of our own: readers in other threads keep searching the loaded one.
        index = self._load(old)
        if index is None:
            return None
        ids, vectors = self.catalog.index_vectors(old.model_id, since=old.revision)
        present = np.unique(index.ids())
        removed = np.setdiff1d(present, current)
        replaced = np.intersect1d(present, ids)
        limit = MAX_UPDATE_SHARE * max(len(index), 1)
        if len(removed) + len(ids) > limit:
            return None
        index.remove(np.concatenate([removed, replaced]))  # a replaced vector is added anew
        if index.blanked > limit:
            return None  # removed vectors still taking a place (HNSW): time to build anew
        index.add(ids, vectors)
        if len(index) != len(current):
            return None  # the bookkeeping disagrees with the catalog: trust the catalog
        updates = (old.params or {}).get("updates", 0) + 1
        params = {**(old.params or {}), **index.updated_params(), "updates": updates}
        return BuiltIndex(index, params, old.recall_at_10)

    def manifest(self, model_id: str) -> Manifest | None:
        """What the index of a model is (None: none built yet)."""
        return self.manifests.manifest(model_id)

    def is_current(self, model_id: str) -> bool:
        manifest = self.manifests.manifest(model_id)
        return manifest is not None and self._fresh(manifest)

    def get(self, model_id: str) -> tuple[Manifest, VectorIndex]:
        """The index to serve for a model.

        A manifest behind the catalog is served as is while an index run holds the lock
        (it rebuilds at the end, and a reader must not race it); otherwise it is rebuilt.
        Hits are always re-checked against the catalog, and ids are never reused, so a
        snapshot can miss new images but never names the wrong one.
        """
        for _ in range(3):
            manifest = self.manifests.manifest(model_id)
            if manifest is None or not (self._fresh(manifest) or self.busy()):
                break
            with self._mutex:
                cached = self._loaded.get(model_id)
            if cached and cached[0].checksum == manifest.checksum:
                return cached
            loaded = self._load(manifest)
            if loaded is not None:
                with self._mutex:
                    self._loaded[model_id] = (manifest, loaded)
                return manifest, loaded
            if not self.busy():
                break  # damaged, and nobody is writing a new one: rebuild
            # An index run swapped generations between our manifest read and the load
            # (it deletes the old file once the manifest names the new one): look again.
        try:
            manifest = self.rebuild(model_id)
        except Exception as exc:
            if storage_failure(exc, "") is None:
                raise
            # The disk is full: what the catalog committed is served from memory, unsaved;
            # the next index run, or a read once there is room, writes it.
            return self._unsaved(model_id)
        return manifest, self._loaded[model_id][1]

    def _unsaved(self, model_id: str) -> tuple[Manifest, VectorIndex]:
        old = self.manifests.manifest(model_id)
        ids, vectors = self.catalog.index_vectors(model_id)
        built = build_index(ids, vectors, self.policy)
        revision = self.catalog.model_revision(model_id)
        generation = old.generation if old else 0
        return _manifest(model_id, generation, "", "", revision, built), built.index

    def _fresh(self, manifest: Manifest) -> bool:
        return manifest.revision == self.catalog.model_revision(manifest.model_id)

    def busy(self) -> bool:
        """An index run is writing: this machine's (the file lock) or, on a shared
        catalog, another machine's."""
        held = self.lock is not None and self.lock.held_elsewhere()
        return held or self.catalog.index_run_active()

    def _load(self, manifest: Manifest) -> VectorIndex | None:
        from search.index.vectors import VectorIndex

        path = self.index_dir / manifest.filename
        try:
            index, checksum = VectorIndex.load(path)
        except (OSError, RuntimeError):
            return None
        if (checksum, len(index), index.kind) != (manifest.checksum, manifest.count, manifest.kind):
            return None
        if index.knob in (manifest.params or {}):
            # The file carries its search parameter too; the manifest holds the value
            # whose recall was measured, so that is the one to search with.
            index.tune(manifest.params[index.knob])
        return index
