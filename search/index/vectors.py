"""The VectorIndex seam: numpy in, (scores, ids) out. FAISS ids are catalog image ids.
A video's frames all carry its id, so an id may hold several vectors: a search answers
each id once, with its best-scoring vector.

Inner product over L2-normalised vectors, i.e. cosine similarity. One class per kind of
index (ExactIndex, HnswIndex, IvfIndex), chosen once from the FAISS object when an index is
built or loaded (`VectorIndex.wrap`). search.index.ann builds and tunes the approximate kinds: their
search parameter (`knob`) is set on the FAISS object, so every search, and a saved file, uses
the tuned value. search.index.store updates them in place when a sync changed a small part of
a large library. This module imports FAISS: import it where an index is used.
"""

from __future__ import annotations

import contextlib
import math
import threading
from pathlib import Path

import faiss
import numpy as np

from search.diskfiles import file_sha256, replacing

# Filtered HNSW search skips disallowed nodes but still walks them; on 512-d clustered data
# it computes about this many distances per unit of efSearch (measured with FAISS 1.15).
# With m of n vectors allowed it needs efSearch·n/m, so an exact scan of the m allowed
# vectors is cheaper while m ≤ DISTANCES_PER_EF·efSearch·n/m.
DISTANCES_PER_EF = 16
# Below this an exact CPU scan takes well under a millisecond or two: no GPU round trip.
GPU_MIN = 20_000
# faiss-gpu's k-selection stops at 2048 (GPU_MAX_SELECTION_K); deeper pages use the CPU.
GPU_MAX_K = 2048


class VectorIndex:
    """What every kind offers. FAISS's own add, remove and search serve unless a kind says
    otherwise; each kind gives a search its FAISS parameters (`_params(allowed or None)`)."""

    kind: str
    knob: str | None = None  # the search parameter search.index.ann tunes; None: nothing to tune
    blanked = 0  # removed vectors that still take a place (HnswIndex)

    def __init__(self, index) -> None:
        self._index = index
        self.dim = index.d

    @staticmethod
    def wrap(index) -> VectorIndex:
        """The FAISS index in the class of its kind."""
        if faiss.try_extract_index_ivf(index) is not None:
            return IvfIndex(index)
        if isinstance(faiss.downcast_index(index.index), faiss.IndexHNSW):
            return HnswIndex(index)
        return ExactIndex(index)

    @staticmethod
    def build(ids: np.ndarray, vectors: np.ndarray) -> VectorIndex:
        """An exact index; search.index.ann.build_index picks between this and approximate ones."""
        dim = vectors.shape[1] if vectors.ndim == 2 and vectors.size else 1
        index = ExactIndex(faiss.IndexIDMap2(faiss.IndexFlatIP(dim)))
        index.add(ids, vectors)
        return index

    def __len__(self) -> int:
        """Vectors that can be found."""
        return int(self._index.ntotal) - self.blanked

    def ids(self) -> np.ndarray:
        """The image ids in the index, ascending (here those an IndexIDMap2 maps to)."""
        mapped = faiss.vector_to_array(self._index.id_map)
        return np.sort(mapped[mapped >= 0])

    def tuning(self) -> dict[str, int]:
        """The search parameter in use; {} for a kind without one."""
        return {}

    def tune(self, value: int) -> None:
        """Set the search parameter; a kind without one has nothing to set."""

    def updated_params(self) -> dict[str, int]:
        """What the manifest records of an index updated in place."""
        return self.tuning()

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors under ids that are not in the index (remove a replaced one first)."""
        if len(ids):
            vectors = np.ascontiguousarray(vectors, dtype=np.float32)
            self._index.add_with_ids(vectors, np.ascontiguousarray(ids, dtype=np.int64))

    def remove(self, ids: np.ndarray) -> None:
        """Drop these non-negative ids; ids not in the index are ignored."""
        if len(ids):
            self._index.remove_ids(_selector(ids))

    def search(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) for one query vector, best first, each id once (at its
        best vector); `allowed` restricts the hits to those ids. Fewer than k come back
        when fewer exist."""
        k = min(k, len(self))
        if allowed is not None:
            allowed = np.ascontiguousarray(allowed, dtype=np.int64)
            allowed = allowed[allowed >= 0]  # no image has a negative id
        if k <= 0 or (allowed is not None and len(allowed) == 0):
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        q = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
        depth = k
        while True:
            scores, ids = self._search(q, depth, allowed)
            _, first = np.unique(ids, return_index=True)
            if len(first) == len(ids):
                return scores[:k], ids[:k]
            # A video's frames took several places: read deeper for k distinct ids.
            first.sort()
            if len(first) >= k or len(ids) < depth or depth >= len(self):
                return scores[first[:k]], ids[first[:k]]
            depth = min(4 * depth, len(self))

    def _search(self, q: np.ndarray, k: int, allowed: np.ndarray | None):
        with _one_thread():
            scores, ids = self._index.search(q, k, params=self._params(allowed))
        return _valid(scores[0], ids[0])

    def search_many(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Unfiltered top-k for a batch of queries (-1 pads missing hits): for measuring
        recall, where one FAISS call per batch keeps tuning quick."""
        q = np.ascontiguousarray(queries, dtype=np.float32)
        return self._index.search(q, min(k, len(self)), params=self._params(None))

    def sample(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(image ids, vectors) of up to n stored vectors spread evenly over the index:
        enough to see how a query scores against the whole library (search.query.relevance)
        in a few thousand dot products. Here from the flat storage every exact and HNSW
        index keeps."""
        storage = self._flat()
        stored = faiss.rev_swig_ptr(storage.get_xb(), storage.ntotal * self.dim)
        live = self._live()
        picked = live[spread(len(live), n)]
        ids = faiss.vector_to_array(self._index.id_map)[picked]
        return ids, stored.reshape(-1, self.dim)[picked].copy()

    def stored(self) -> tuple[np.ndarray, np.ndarray]:
        """(image ids, vectors) of every current vector, read from the index's own storage
        (tags score the whole library: this is a fraction of reading it from the catalog).
        The matrix may be a view of that storage: read it, never write it."""
        storage = self._flat()
        flat = faiss.rev_swig_ptr(storage.get_xb(), storage.ntotal * self.dim)
        flat = flat.reshape(-1, self.dim)
        ids = faiss.vector_to_array(self._index.id_map)
        live = self._live()
        if len(live) == len(ids):
            return ids, flat
        return ids[live], flat[live]

    def _flat(self):
        return faiss.downcast_index(self._index.index)

    def _live(self) -> np.ndarray:
        """The storage positions that hold a current vector."""
        return np.arange(self._flat().ntotal)

    # FAISS reads and writes files itself: for a 2.3 GB HNSW index, read_index(path) took
    # 1.1 s where read_bytes + deserialize_index took 7.8 s (it copies the bytes into a
    # zero-filled vector first), and write_index 0.5 s against serialize_index's 13.9 s.
    def save(self, path: Path) -> str:
        """Write atomically (temp file, fsync, rename); returns the file's sha256."""
        with replacing(path) as tmp:
            if (native := _native(tmp)) is not None:
                faiss.write_index(self._index, native)
            else:
                tmp.write_bytes(faiss.serialize_index(self._index).tobytes())
            checksum = file_sha256(tmp)
        return checksum

    @staticmethod
    def load(path: Path) -> tuple[VectorIndex, str]:
        """The index and the sha256 of its file. Index files are never rewritten in place
        (each generation is a new file), so hashing and reading need not be one read."""
        checksum = file_sha256(path)
        if (native := _native(path)) is not None:
            index = faiss.read_index(native)
        else:
            index = faiss.deserialize_index(np.frombuffer(path.read_bytes(), dtype=np.uint8))
        return VectorIndex.wrap(index), checksum


class ExactIndex(VectorIndex):
    """``flat-ip``, IndexIDMap2 over IndexFlatIP: every vector scored. With faiss-gpu
    installed and a GPU visible, an index of GPU_MIN vectors or more also gets a copy on GPU 0
    for unfiltered searches (a 1M × 512 scan there takes about a millisecond). Filtered
    searches stay on the CPU copy, which FAISS's GPU flat index cannot restrict to ids."""

    kind = "flat-ip"

    _gpu = None  # the GPU copy, made on first use (False: none can be made)

    def _params(self, allowed):
        return None if allowed is None else faiss.SearchParameters(sel=_selector(allowed))

    def _search(self, q, k, allowed):
        if allowed is None and (found := self._gpu_search(q, k)):
            return _valid(found[0][0], found[1][0])
        return super()._search(q, k, allowed)

    def search_many(self, queries, k):
        q = np.ascontiguousarray(queries, dtype=np.float32)
        return self._gpu_search(q, k) or super().search_many(q, k)

    def _gpu_search(self, q: np.ndarray, k: int):
        """(scores, ids) from the GPU copy, made on first use; None where the CPU answers
        (a small index, k past what the GPU selects, or no GPU FAISS)."""
        if len(self) < GPU_MIN or k > GPU_MAX_K:
            return None
        with _GPU_LOCK:
            if self._gpu is None:
                self._gpu = _to_gpu(self._index) or False
            return self._gpu.search(q, min(k, len(self))) if self._gpu else None


class HnswIndex(VectorIndex):
    """``hnsw-ip``, IndexIDMap2 over IndexHNSWFlat: a walk, efSearch wide, of a graph over the
    full vectors. (HNSW has no GPU version.)

    A graph cannot drop a node, so a removed or replaced vector's node keeps its place with
    its id blanked to -1 (saved with the file); searches skip such nodes, and the next full
    build drops them."""

    kind, knob = "hnsw-ip", "efSearch"

    def __init__(self, index) -> None:
        super().__init__(index)
        self._hnsw = faiss.downcast_index(index.index)
        self._storage = faiss.downcast_index(self._hnsw.storage)
        self._map_positions()

    def _map_positions(self) -> None:
        """Position in the graph → image id, and an order to look ids up in it."""
        self._ids = faiss.vector_to_array(self._index.id_map)
        self._order = np.argsort(self._ids, kind="stable")
        self.blanked = int(np.count_nonzero(self._ids < 0))

    def tuning(self) -> dict[str, int]:
        return {"efSearch": self._ef()}

    def tune(self, value: int) -> None:
        self._hnsw.hnsw.efSearch = int(value)

    def updated_params(self) -> dict[str, int]:
        return {**self.tuning(), "blanked": self.blanked}

    def add(self, ids, vectors) -> None:
        super().add(ids, vectors)
        self._map_positions()

    def remove(self, ids) -> None:
        positions = self._positions(ids)
        if len(positions):
            blanked = self._ids.copy()
            blanked[positions] = -1
            faiss.copy_array_to_vector(blanked, self._index.id_map)
            self._index.construct_rev_map()
            self._map_positions()

    def _flat(self):
        return self._storage

    def _live(self):
        # A blanked node's vector is a removed image's, or a re-embedded one's old vector.
        return np.flatnonzero(self._ids >= 0)

    def _ef(self) -> int:
        return int(self._hnsw.hnsw.efSearch)

    def _params(self, allowed):
        if allowed is not None:
            # A walk that skips most nodes needs a wider beam to find k allowed ones.
            ef = math.ceil(self._ef() * (len(self) / len(allowed)))
            return faiss.SearchParametersHNSW(sel=_selector(allowed), efSearch=ef)
        if self.blanked:
            # IndexIDMap2 applies a selector to the ids it maps positions to: -1 is outside.
            live = faiss.IDSelectorRange(0, 2**63 - 1)
            return faiss.SearchParametersHNSW(sel=live, efSearch=self._ef())
        return None

    def _search(self, q, k, allowed):
        if allowed is not None:
            widen = len(self) / len(allowed)
            if len(allowed) <= DISTANCES_PER_EF * self._ef() * widen:  # see DISTANCES_PER_EF
                return self._search_subset(q, k, allowed)
        return super()._search(q, k, allowed)

    def _search_subset(self, q, k, allowed):
        """Exact search over just the allowed vectors of the graph's flat storage."""
        positions = self._positions(allowed)
        if len(positions) == 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        params = faiss.SearchParameters(sel=_selector(positions))
        with _one_thread():
            scores, found = self._storage.search(q, min(k, len(positions)), params=params)
        keep = found[0] >= 0
        return scores[0][keep], self._ids[found[0][keep]]

    def _positions(self, ids: np.ndarray) -> np.ndarray:
        """The graph positions holding these ids (each of a video's frames); ids not in
        the graph are left out."""
        ranked = self._ids[self._order]
        start = np.searchsorted(ranked, ids, side="left")
        count = np.searchsorted(ranked, ids, side="right") - start
        if not count.any():
            return np.zeros(0, np.int64)
        # Each id's run of positions in sorted order: start, start + 1, ...
        offsets = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
        return self._order[np.repeat(start, count) + offsets]


class IvfIndex(VectorIndex):
    """``ivf-ip``, IndexIVF with the ids added natively: nprobe of its inverted lists scanned,
    each vector scored from its codes; an HNSW graph over the lists' centroids (the coarse
    quantizer) picks which."""

    kind, knob = "ivf-ip", "nprobe"

    def __init__(self, index) -> None:
        super().__init__(index)
        self._ivf = faiss.extract_index_ivf(index)
        self._quantizer = faiss.downcast_index(self._ivf.quantizer)

    def ids(self) -> np.ndarray:
        lists = self._ivf.invlists
        parts = [
            faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
            for i in range(self._ivf.nlist)
            if lists.list_size(i)
        ]
        return np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64)

    def sample(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Decoded from the lists' codes (PQ codes give approximate vectors, which is all
        a score distribution needs)."""
        lists = self._ivf.invlists
        sizes = np.array([lists.list_size(i) for i in range(self._ivf.nlist)])
        ends = np.cumsum(sizes)
        picks = spread(int(ends[-1]) if len(ends) else 0, n)
        in_list = np.searchsorted(ends, picks, side="right")
        offsets = picks - (ends[in_list] - sizes[in_list])
        ids = np.empty(len(picks), np.int64)
        out = np.empty((len(picks), self.dim), np.float32)
        for row, (list_no, offset) in enumerate(zip(in_list, offsets)):
            ids[row] = lists.get_single_id(int(list_no), int(offset))
            self._ivf.reconstruct_from_offset(int(list_no), int(offset), faiss.swig_ptr(out[row]))
        return ids, out

    def tuning(self) -> dict[str, int]:
        return {
            "nprobe": int(self._ivf.nprobe),
            "quantizer_efSearch": int(self._quantizer.hnsw.efSearch),
        }

    def tune(self, value: int) -> None:
        self._ivf.nprobe = int(value)
        self._quantizer.hnsw.efSearch = _quantizer_ef(int(value))

    def _params(self, allowed):
        if allowed is None:
            return None
        # Probe more lists in proportion, up to all of them: then every allowed vector is
        # scored (from its codes).
        widen = len(self) / len(allowed)
        nprobe = min(int(self._ivf.nlist), math.ceil(self._ivf.nprobe * widen))
        quantizer = faiss.SearchParametersHNSW(efSearch=_quantizer_ef(nprobe))
        sel = _selector(allowed)
        return faiss.SearchParametersIVF(sel=sel, nprobe=nprobe, quantizer_params=quantizer)


def _quantizer_ef(nprobe: int) -> int:
    # The coarse quantizer's own HNSW must return nprobe good lists, not just the first few.
    return max(64, 2 * nprobe)


_GPU_RESOURCES = None
# FAISS's GPU resources (streams, scratch memory) and the indexes using them are not
# thread-safe: one search on the GPU at a time.
_GPU_LOCK = threading.Lock()


def _to_gpu(index):
    """A copy of `index` on GPU 0, or None when this FAISS build has no GPU support or
    sees no GPU (faiss-cpu answers get_num_gpus() with 0) or the copy does not fit."""
    global _GPU_RESOURCES
    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() < 1:
        return None
    try:
        if _GPU_RESOURCES is None:
            # One set of streams and scratch memory for every index in the process.
            _GPU_RESOURCES = faiss.StandardGpuResources()
        return faiss.index_cpu_to_gpu(_GPU_RESOURCES, 0, index)
    except (RuntimeError, MemoryError):
        return None


@contextlib.contextmanager
def _one_thread():
    """Run FAISS single-threaded in this block, in this thread only (OpenMP's thread count
    is per calling thread). One query gains nothing from a thread team, and on a busy
    machine waiting for the team to be scheduled dominates: HNSW on 50k vectors took
    8 ms a query with 2 threads and 0.3 ms with 1, on 2 shared cores."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _selector(members: np.ndarray):
    """A FAISS selector of these non-negative ids: a bitmap, one bit per id up to the
    largest. It builds in well under a millisecond and tests membership with one bit, where
    IDSelectorBatch hashes every id per query (7 ms for 100k allowed, measured)."""
    mask = np.zeros(int(members.max()) + 1, dtype=bool)
    mask[members] = True
    return faiss.IDSelectorBitmap(np.packbits(mask, bitorder="little"))


def spread(total: int, n: int) -> np.ndarray:
    """n positions of 0..total-1, evenly apart (all of them when total <= n)."""
    if total <= n:
        return np.arange(total)
    return np.linspace(0, total - 1, n).astype(np.int64)


def _valid(scores: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = ids >= 0
    return scores[keep], ids[keep]


def _native(path: Path) -> str | None:
    """The path as FAISS's C++ file functions take it (UTF-8); None for a name that is not
    valid UTF-8, which then goes through Python's file functions."""
    text = str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return text
