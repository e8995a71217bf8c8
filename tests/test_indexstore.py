"""The FAISS layer: VectorIndex (exact cosine top-k), IndexStore (generations + manifest,
rebuilt from the catalog whenever a file cannot be trusted) and the IndexLock."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from search.catalog.records import ImageData
from search.catalog.store import Catalog
from search.diskfiles import atomic_write
from search.errors import ImgsearchError
from search.index.lock import IndexLock
from search.index.store import IndexStore
from search.index.vectors import VectorIndex
from search.models.spec import ModelSpec

DIM = 16
MODEL = "test-model/random:0123"


def unit_vectors(n: int, seed: int = 0, dim: int = DIM) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def brute_force(ids, vectors, query, k, allowed=None):
    ids = np.asarray(ids)
    scores = vectors @ query
    if allowed is not None:
        mask = np.isin(ids, allowed)
        ids, scores = ids[mask], scores[mask]
    order = np.argsort(-scores, kind="stable")[:k]
    return scores[order], ids[order]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- VectorIndex -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(42)
    n = 400
    ids = np.sort(rng.choice(np.arange(1, 100_000), size=n, replace=False)).astype(np.int64)
    return ids, unit_vectors(n, seed=1), unit_vectors(10, seed=2)


def test_top_k_equals_brute_force(data) -> None:
    ids, vecs, queries = data
    index = VectorIndex.build(ids, vecs)
    assert len(index) == len(ids) and index.dim == DIM
    for q in queries:
        for k in (1, 7, 50):
            scores, got = index.search(q, k)
            want_scores, want = brute_force(ids, vecs, q, k)
            assert got.dtype == np.int64 and scores.dtype == np.float32
            np.testing.assert_array_equal(got, want)
            np.testing.assert_allclose(scores, want_scores, atol=1e-5)
            assert np.all(np.diff(scores) <= 1e-7)  # best first


def test_query_that_is_an_indexed_vector_finds_itself_first(data) -> None:
    ids, vecs, _ = data
    index = VectorIndex.build(ids, vecs)
    for row in (0, 17, len(ids) - 1):
        scores, got = index.search(vecs[row], 3)
        assert got[0] == ids[row]
        assert scores[0] == pytest.approx(1.0, abs=1e-5)
        np.testing.assert_array_equal(index._index.reconstruct(int(ids[row])), vecs[row])


def test_allowed_restricts_results(data) -> None:
    ids, vecs, queries = data
    index = VectorIndex.build(ids, vecs)
    rng = np.random.default_rng(7)
    allowed = rng.choice(ids, size=25, replace=False)
    # Ids that are not in the index are harmless.
    allowed_plus = np.concatenate([allowed, [0, 100_001, 100_002]])
    for q in queries[:5]:
        scores, got = index.search(q, 10, allowed_plus)
        want_scores, want = brute_force(ids, vecs, q, 10, allowed)
        assert set(got.tolist()) <= set(allowed.tolist())
        np.testing.assert_array_equal(got, want)
        np.testing.assert_allclose(scores, want_scores, atol=1e-5)
    # Fewer allowed than k: exactly the allowed ones come back, no -1 padding.
    few = ids[[3, 99, 250]]
    scores, got = index.search(queries[0], 10, few)
    assert sorted(got.tolist()) == sorted(few.tolist()) and len(scores) == 3
    # Nothing allowed: nothing found.
    for empty in (np.zeros(0, np.int64), np.array([-5, 0], np.int64)):
        scores, got = index.search(queries[0], 10, empty)
        assert len(got) == 0 and len(scores) == 0


def test_k_larger_than_the_index_returns_everything(data) -> None:
    ids, vecs, queries = data
    small_ids, small = ids[:12], vecs[:12]
    index = VectorIndex.build(small_ids, small)
    scores, got = index.search(queries[0], 1000)
    assert sorted(got.tolist()) == sorted(small_ids.tolist())
    _, want = brute_force(small_ids, small, queries[0], 1000)
    np.testing.assert_array_equal(got, want)
    assert len(index.search(queries[0], 0)[1]) == 0
    assert len(index.search(queries[0], -3)[1]) == 0


def test_empty_index_returns_empty() -> None:
    index = VectorIndex.build(np.zeros(0, np.int64), np.zeros((0, 0), np.float32))
    assert len(index) == 0
    q = unit_vectors(1)[0]
    scores, got = index.search(q, 5)
    assert got.shape == (0,) and scores.shape == (0,)
    assert len(index.search(q, 5, np.array([1, 2]))[1]) == 0


@pytest.mark.parametrize("folder_name", ["index", os.fsdecode(b"lib-\xff-index")])
def test_save_is_atomic_and_load_gives_the_same_results(tmp_path, data, folder_name) -> None:
    """Also in a folder whose name is not UTF-8 (FAISS's own file functions take UTF-8)."""
    ids, vecs, queries = data
    index = VectorIndex.build(ids, vecs)
    folder = tmp_path / folder_name
    path = folder / "model.1.faiss"
    checksum = index.save(path)
    assert sorted(p.name for p in folder.iterdir()) == ["model.1.faiss"]
    assert checksum == sha256(path)

    loaded, loaded_checksum = VectorIndex.load(path)
    assert loaded_checksum == checksum
    assert len(loaded) == len(index) and loaded.dim == DIM
    for q in queries:
        for a, b in zip(index.search(q, 20), loaded.search(q, 20)):
            np.testing.assert_array_equal(a, b)
    allowed = ids[::7]
    for a, b in zip(index.search(queries[0], 5, allowed), loaded.search(queries[0], 5, allowed)):
        np.testing.assert_array_equal(a, b)

    # Saving over an existing file replaces it, again with nothing left behind.
    other = VectorIndex.build(ids[:5], vecs[:5])
    checksum2 = other.save(path)
    assert checksum2 == sha256(path) != checksum
    assert sorted(p.name for p in folder.iterdir()) == ["model.1.faiss"]
    assert len(VectorIndex.load(path)[0]) == 5


def test_atomic_write_failure_leaves_old_file_and_no_temp(tmp_path, monkeypatch) -> None:
    path = tmp_path / "file.bin"
    atomic_write(path, b"old contents")

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space"):
        atomic_write(path, b"new contents that never land")
    assert path.read_bytes() == b"old contents"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]


# -- IndexStore --------------------------------------------------------------------------------
def image(root_id: int, i: int) -> ImageData:
    return ImageData(
        root_id, f"/photos/{i:04}.jpg", 10, 1, f"hash{i}", 64, 64, None, datetime(2021, 1, 1)
    )


class Fixture:
    """A catalog with vectors for one model, and a store over its index directory."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.index_dir = home / "index"
        self.catalog = Catalog.open(home / "catalog.db")
        self.catalog.ensure_model(MODEL, ModelSpec("m", "none"), DIM)
        self.root = self.catalog.add_root("/photos").id
        self.n = 0

    def add(self, n: int) -> list[int]:
        start = self.n
        self.n += n
        return self.catalog.write_batch(
            MODEL,
            [image(self.root, i) for i in range(start, start + n)],
            unit_vectors(n, seed=start),
        )

    def store(self, lock: IndexLock | None = None) -> IndexStore:
        return IndexStore(self.catalog, self.index_dir, lock)

    def files(self) -> list[str]:
        return sorted(p.name for p in self.index_dir.iterdir()) if self.index_dir.exists() else []

    def assert_serves_catalog(self, index: VectorIndex) -> None:
        """The index holds exactly the catalog's vectors under their image ids."""
        ids, vecs = self.catalog.vectors(MODEL)
        assert len(index) == len(ids)
        for row in range(0, len(ids), max(1, len(ids) // 5)):
            _, got = index.search(vecs[row], 1)
            assert got.tolist() == [ids[row]]
            np.testing.assert_array_equal(index._index.reconstruct(int(ids[row])), vecs[row])
        q = unit_vectors(1, seed=999)[0]
        np.testing.assert_array_equal(index.search(q, 10)[1], brute_force(ids, vecs, q, 10)[1])


@pytest.fixture
def fx(tmp_path):
    f = Fixture(tmp_path / "home")
    try:
        yield f
    finally:
        f.catalog.close()


def test_rebuild_writes_generations_and_removes_the_old_file(fx) -> None:
    fx.add(30)
    store = fx.store()
    m1 = store.rebuild(MODEL)
    assert (m1.generation, m1.count, m1.kind) == (1, 30, "flat-ip")
    assert m1.revision == fx.catalog.model(MODEL).revision
    assert fx.files() == [m1.filename]
    assert m1.checksum == sha256(fx.index_dir / m1.filename)
    assert fx.catalog.manifest(MODEL) == m1
    assert store.is_current(MODEL)

    fx.add(5)
    assert not store.is_current(MODEL)
    m2 = store.rebuild(MODEL)
    assert (m2.generation, m2.count) == (2, 35)
    assert m2.filename != m1.filename
    assert fx.files() == [m2.filename]  # gen 1 is gone, no temp files either
    assert m2.checksum == sha256(fx.index_dir / m2.filename)
    assert store.is_current(MODEL)


def test_get_builds_when_there_is_no_index_and_then_caches(fx) -> None:
    fx.add(20)
    store = fx.store()
    assert not store.is_current(MODEL)
    manifest, index = store.get(MODEL)
    assert manifest.generation == 1
    fx.assert_serves_catalog(index)
    again_manifest, again = store.get(MODEL)
    assert again is index and again_manifest == manifest
    assert fx.files() == [manifest.filename]


def test_a_second_store_loads_the_file_without_rebuilding(fx) -> None:
    fx.add(20)
    m1, _ = fx.store().get(MODEL)
    manifest, index = fx.store().get(MODEL)
    assert manifest == m1  # same generation: read from disk, not rebuilt
    fx.assert_serves_catalog(index)


def test_get_rebuilds_when_the_catalog_moved_on(fx) -> None:
    fx.add(20)
    store = fx.store(IndexLock(fx.home))
    m1, _ = store.get(MODEL)
    new_ids = fx.add(4)
    manifest, index = store.get(MODEL)
    assert manifest.generation == 2 and len(index) == 24
    fx.assert_serves_catalog(index)
    removed = new_ids[:2]
    fx.catalog.remove_images(removed)
    manifest, index = store.get(MODEL)
    assert manifest.generation == 3 and len(index) == 22
    hits = index.search(unit_vectors(1, seed=5)[0], 100)[1].tolist()
    assert not set(removed) & set(hits)


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete", "older-generation", "garbage"])
def test_a_damaged_index_file_is_detected_and_rebuilt_from_the_catalog(fx, damage) -> None:
    fx.add(15)
    old_index_bytes = None
    if damage == "older-generation":
        fx.store().rebuild(MODEL)
        old_index_bytes = (fx.index_dir / fx.catalog.manifest(MODEL).filename).read_bytes()
        fx.add(3)  # the generation after this one holds different vectors
    manifest = fx.store().rebuild(MODEL)
    path = fx.index_dir / manifest.filename
    raw = path.read_bytes()
    if damage == "flip":
        b = bytearray(raw)
        for off in (len(b) // 2, len(b) - 10):  # inside the vectors: still a loadable index
            b[off] ^= 0xFF
        path.write_bytes(bytes(b))
        assert len(VectorIndex.load(path)[0]) == manifest.count  # FAISS would serve it
    elif damage == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "delete":
        path.unlink()
    elif damage == "older-generation":
        path.write_bytes(old_index_bytes)
    else:
        path.write_bytes(os.urandom(len(raw)))

    store = fx.store()  # a fresh reader: nothing cached, must read the file
    got_manifest, index = store.get(MODEL)
    assert got_manifest.generation == manifest.generation + 1
    assert got_manifest.count == fx.n
    fx.assert_serves_catalog(index)
    assert fx.files() == [got_manifest.filename]
    assert got_manifest.checksum == sha256(fx.index_dir / got_manifest.filename)
    assert fx.catalog.manifest(MODEL) == got_manifest


def test_a_manifest_whose_count_disagrees_is_rebuilt(fx) -> None:
    fx.add(10)
    manifest = fx.store().rebuild(MODEL)
    fx.catalog.set_manifest(replace(manifest, count=manifest.count + 1))
    got, index = fx.store().get(MODEL)
    assert got.generation == manifest.generation + 1 and got.count == 10
    fx.assert_serves_catalog(index)


def test_a_stale_index_is_served_as_a_snapshot_while_an_index_run_holds_the_lock(fx) -> None:
    first_ids = fx.add(12)
    manifest = fx.store().rebuild(MODEL)
    fx.add(6)  # the catalog moves on: the manifest's revision is behind
    assert manifest.revision < fx.catalog.model(MODEL).revision

    holder = IndexLock(fx.home)  # "the index run": another handle on the same lock file
    holder.acquire()
    try:
        store = fx.store(IndexLock(fx.home))
        assert not store.is_current(MODEL)
        got, index = store.get(MODEL)
        assert got == manifest  # served as is, not rebuilt under the running indexer
        assert len(index) == 12
        assert fx.files() == [manifest.filename]
        hits = index.search(unit_vectors(1, seed=3)[0], 100)[1]
        assert set(hits.tolist()) == set(first_ids)  # a snapshot: old ids only, all real
        # Asking again while still locked: still the snapshot.
        assert store.get(MODEL)[0] == manifest
    finally:
        holder.release()

    # Once the run is over (lock free), the stale manifest is rebuilt.
    got, index = store.get(MODEL)
    assert got.generation == manifest.generation + 1 and len(index) == 18
    fx.assert_serves_catalog(index)
    assert fx.files() == [got.filename]


def test_without_a_lock_a_stale_index_is_rebuilt(fx) -> None:
    fx.add(12)
    manifest = fx.store().rebuild(MODEL)
    fx.add(1)
    holder = IndexLock(fx.home)
    holder.acquire()
    try:
        got, index = fx.store(lock=None).get(MODEL)
    finally:
        holder.release()
    assert got.generation == manifest.generation + 1 and len(index) == 13


def test_while_locked_a_damaged_snapshot_is_still_never_served(fx) -> None:
    fx.add(8)
    manifest = fx.store().rebuild(MODEL)
    fx.add(2)
    path = fx.index_dir / manifest.filename
    b = bytearray(path.read_bytes())
    b[len(b) // 2] ^= 0xFF
    path.write_bytes(bytes(b))
    with IndexLock(fx.home):
        got, index = fx.store(IndexLock(fx.home)).get(MODEL)
    assert got.checksum != manifest.checksum
    assert got.checksum == sha256(fx.index_dir / got.filename)
    fx.assert_serves_catalog(index)


def test_store_for_a_model_without_vectors_serves_an_empty_index(fx) -> None:
    fx.catalog.ensure_model("empty-model", ModelSpec(), DIM)
    manifest, index = fx.store().get("empty-model")
    assert manifest.count == 0 and len(index) == 0
    assert len(index.search(unit_vectors(1)[0], 5)[1]) == 0
    # And it is loadable from disk by another reader.
    manifest2, index2 = fx.store().get("empty-model")
    assert manifest2 == manifest and len(index2) == 0


def test_models_get_separate_index_files(fx) -> None:
    ids = fx.add(6)
    other = "other/model:with odd/chars"
    fx.catalog.ensure_model(other, ModelSpec(), 8)
    fx.catalog.add_vectors(other, ids[:3], unit_vectors(3, seed=11, dim=8))
    store = fx.store()
    m_a, ia = store.get(MODEL)
    m_b, ib = store.get(other)
    assert m_a.filename != m_b.filename
    assert "/" not in m_b.filename and " " not in m_b.filename
    assert (len(ia), ia.dim, len(ib), ib.dim) == (6, DIM, 3, 8)
    assert fx.files() == sorted([m_a.filename, m_b.filename])


def test_library_wires_the_store_to_the_library_lock(library) -> None:
    assert library.store.lock is library.lock
    assert library.store.index_dir == library.settings.index_dir
    assert library.lock.path.parent == library.settings.home


# -- IndexLock ---------------------------------------------------------------------------------
def test_second_acquire_is_refused(tmp_path) -> None:
    first, second = IndexLock(tmp_path), IndexLock(tmp_path)
    assert not second.held_elsewhere()  # no lock file yet
    first.acquire()
    try:
        with pytest.raises(
            ImgsearchError, match=rf"another `imgsearch index` \(pid {os.getpid()}\)"
        ):
            second.acquire()
        assert second.held_elsewhere()
        assert not first.held_elsewhere()  # the holder itself is not "elsewhere"
        # A failed acquire leaves the holder's lock in place.
        assert second.held_elsewhere()
    finally:
        first.release()
    assert not second.held_elsewhere()
    assert not first.held_elsewhere()
    with second:
        assert first.held_elsewhere()
        with pytest.raises(ImgsearchError, match="another"):
            first.acquire()
    assert not first.held_elsewhere()
    first.release()  # releasing a lock not held is harmless
    first.release()


def test_a_readers_probe_does_not_refuse_an_index_run(tmp_path) -> None:
    """held_elsewhere() holds a shared lock for an instant; a server answering /api/status
    probes on every request, and an index run starting then must not be refused."""
    import fcntl
    import threading

    lock = IndexLock(tmp_path)
    lock.acquire()
    lock.release()
    probe = os.open(lock.path, os.O_RDONLY)
    fcntl.flock(probe, fcntl.LOCK_SH)  # a probe caught in the act (held 0.2 s here)
    threading.Timer(0.2, lambda: os.close(probe)).start()
    with lock:
        assert IndexLock(tmp_path).held_elsewhere()


def test_lock_is_released_when_the_block_raises(tmp_path) -> None:
    lock = IndexLock(tmp_path / "home")
    with pytest.raises(RuntimeError), lock:
        raise RuntimeError("boom")
    with IndexLock(tmp_path / "home"):
        pass


def test_lock_is_seen_across_processes(tmp_path) -> None:
    repo = Path(__file__).resolve().parent.parent
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(repo)!r})
        from pathlib import Path
        from search.index.lock import IndexLock
        lock = IndexLock(Path({str(tmp_path)!r}))
        lock.acquire()
        print("locked", flush=True)
        sys.stdin.readline()
        lock.release()
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "locked"
        mine = IndexLock(tmp_path)
        assert mine.held_elsewhere()
        with pytest.raises(ImgsearchError, match="another"):
            mine.acquire()
    finally:
        proc.stdin.write("\n")
        proc.stdin.close()
        proc.wait(timeout=30)
        proc.stdout.close()
    assert proc.returncode == 0
    assert not mine.held_elsewhere()
    with mine:
        pass


def test_reader_follows_a_generation_swap_instead_of_rebuilding(tmp_path) -> None:
    """An index run replaced the file between a reader's manifest read and its load:
    the reader must look again, not rebuild (and race the writer) while the lock is held."""
    from datetime import datetime

    from search.catalog.records import ImageData
    from search.catalog.store import Catalog
    from search.index.lock import IndexLock
    from search.index.store import IndexStore

    cat = Catalog.open(tmp_path / "catalog.db")
    root = cat.add_root(str(tmp_path))
    cat.ensure_model("m", ModelSpec("m"), 4)
    vecs = np.eye(4, dtype=np.float32)
    now = datetime(2020, 1, 1)
    cat.write_batch(
        "m",
        [
            ImageData(root.id, f"{tmp_path}/{i}.jpg", 1, 1, str(i), 1, 1, None, now)
            for i in range(4)
        ],
        vecs,
    )
    writer = IndexStore(cat, tmp_path / "index")
    writer.rebuild("m")
    reader = IndexStore(cat, tmp_path / "index", IndexLock(tmp_path))
    stale = cat.manifest("m")
    writer.rebuild("m", full=True)  # the old generation's file is gone now
    held = IndexLock(tmp_path)
    held.acquire()
    try:
        rebuilt = []
        reader.rebuild = lambda model_id: rebuilt.append(model_id)  # type: ignore[method-assign]
        calls = iter([stale, cat.manifest("m"), cat.manifest("m")])
        real_manifest = cat.manifest
        cat.manifest = lambda model_id: next(calls, None) or real_manifest(model_id)  # type: ignore[method-assign]
        manifest, index = reader.get("m")
        assert manifest.generation == 2 and len(index) == 4 and not rebuilt
    finally:
        held.release()
        cat.close()
