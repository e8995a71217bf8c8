"""The VectorIndex seam: numpy in, (scores, ids) out. FAISS ids are catalog image ids.

Inner product over L2-normalised vectors, i.e. cosine similarity. Three kinds:

- ``flat-ip``: exact (IndexIDMap2 over IndexFlatIP), for small libraries;
- ``hnsw-ip``: an HNSW graph over the full vectors (IndexIDMap2 over IndexHNSWFlat);
- ``ivf-ip``: inverted lists under an HNSW coarse quantizer, vectors kept as codes
  (IndexIVF with the ids added natively).

search.ann builds and tunes the approximate kinds. Their search parameter (efSearch,
nprobe) is set on the FAISS object, so every search, and a saved file, uses the tuned value.

Approximate indexes are also updated in place (`update`) when a sync changed a small part
of a large library. An HNSW graph cannot drop a node, so a removed or replaced vector's
node keeps its place with its id blanked to -1 (saved with the file); searches skip such
nodes, and the next full build drops them.

With faiss-gpu installed and a GPU visible, an exact index of GPU_MIN vectors or more also
gets a copy on GPU 0 for unfiltered searches (a 1M × 512 scan there takes about a
millisecond). Filtered searches stay on the CPU copy, which FAISS's GPU flat index cannot
restrict to an id selector; HNSW has no GPU version at all.
"""

from __future__ import annotations

import contextlib
import math
import threading
from pathlib import Path

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
    def __init__(self, index) -> None:
        import faiss

        self._index = index
        self.dim = index.d
        self._gpu = None  # the GPU copy, made on first use (see _gpu_index)
        self._gpu_lock = threading.Lock()  # a GPU index serves one thread at a time
        self.kind, self.knob = "flat-ip", None
        self.blanked = 0  # HNSW nodes whose id was blanked (see the module docstring)
        self._ivf = faiss.try_extract_index_ivf(index)
        if self._ivf is not None:
            self.kind, self.knob = "ivf-ip", "nprobe"
            self._quantizer = faiss.downcast_index(self._ivf.quantizer)
        elif isinstance(inner := faiss.downcast_index(index.index), faiss.IndexHNSW):
            self.kind, self.knob = "hnsw-ip", "efSearch"
            self._hnsw = inner
            self._storage = faiss.downcast_index(inner.storage)
            # Position in the graph → image id, and an order to look ids up in it.
            self._ids = faiss.vector_to_array(index.id_map)
            self._order = np.argsort(self._ids, kind="stable")
            self.blanked = int(np.count_nonzero(self._ids < 0))

    @classmethod
    def build(cls, ids: np.ndarray, vectors: np.ndarray) -> VectorIndex:
        """An exact index; search.ann.build_index picks between this and approximate ones."""
        import faiss

        dim = vectors.shape[1] if vectors.ndim == 2 and vectors.size else 1
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        if len(ids):
            index.add_with_ids(
                np.ascontiguousarray(vectors, dtype=np.float32),
                np.ascontiguousarray(ids, dtype=np.int64),
            )
        return cls(index)

    def __len__(self) -> int:
        """Vectors that can be found (blanked HNSW nodes do not count)."""
        return int(self._index.ntotal) - self.blanked

    def ids(self) -> np.ndarray:
        """The image ids in the index, ascending."""
        import faiss

        if self.kind == "hnsw-ip":
            found = self._ids[self._ids >= 0]
        elif self.kind == "ivf-ip":
            lists = self._ivf.invlists
            parts = [
                faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
                for i in range(self._ivf.nlist)
                if lists.list_size(i)
            ]
            found = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        else:
            found = faiss.vector_to_array(self._index.id_map)
        return np.sort(found.astype(np.int64, copy=False))

    def update(self, remove: np.ndarray, ids: np.ndarray, vectors: np.ndarray) -> VectorIndex:
        """Drop the `remove` ids and add `ids` with their vectors (an id that is already in
        the index is replaced). Approximate kinds only; returns the index to use from now
        (this one, re-read), as the id bookkeeping above is computed when it is made."""
        import faiss

        if self.kind not in ("hnsw-ip", "ivf-ip"):
            raise ValueError(f"a {self.kind} index is rebuilt, not updated")
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        gone = np.union1d(np.asarray(remove, dtype=np.int64), ids)
        gone = gone[gone >= 0]
        if self.kind == "ivf-ip":
            if len(gone):
                self._index.remove_ids(_selector(gone))
        else:
            positions = self._positions(gone)
            if len(positions):
                blanked = self._ids.copy()
                blanked[positions] = -1
                faiss.copy_array_to_vector(blanked, self._index.id_map)
                self._index.construct_rev_map()
        if len(ids):
            self._index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids)
        return VectorIndex(self._index)

    def tuning(self) -> dict[str, int]:
        """The search parameter in use; {} for an exact index."""
        if self.kind == "hnsw-ip":
            return {"efSearch": self._ef()}
        if self.kind == "ivf-ip":
            return {
                "nprobe": int(self._ivf.nprobe),
                "quantizer_efSearch": int(self._quantizer.hnsw.efSearch),
            }
        return {}

    def tune(self, value: int) -> None:
        """Set efSearch (hnsw) or nprobe (ivf); an exact index has nothing to tune."""
        if self.kind == "hnsw-ip":
            self._hnsw.hnsw.efSearch = int(value)
        elif self.kind == "ivf-ip":
            self._ivf.nprobe = int(value)
            self._quantizer.hnsw.efSearch = _quantizer_ef(int(value))

    def search(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) for one query vector, best first; `allowed` restricts the
        hits to those ids. Fewer than k come back when fewer exist."""
        empty = np.zeros(0, np.float32), np.zeros(0, np.int64)
        k = min(k, len(self))
        if allowed is not None:
            allowed = np.ascontiguousarray(allowed, dtype=np.int64)
            allowed = allowed[allowed >= 0]  # no image has a negative id
        if k <= 0 or (allowed is not None and len(allowed) == 0):
            return empty
        q = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
        if allowed is None and (gpu := self._gpu_index(k)) is not None:
            with self._gpu_lock:
                scores, ids = gpu.search(q, k)
            return _valid(scores[0], ids[0])
        with _one_thread():
            if allowed is None:
                scores, ids = self._index.search(q, k, params=self._live())
                return _valid(scores[0], ids[0])
            widen = len(self) / len(allowed)
            if self.kind == "hnsw-ip" and len(allowed) <= DISTANCES_PER_EF * self._ef() * widen:
                return self._search_subset(q, k, allowed)
            scores, ids = self._index.search(q, k, params=self._filtered(allowed, widen))
            return _valid(scores[0], ids[0])

    def _ef(self) -> int:
        return int(self._hnsw.hnsw.efSearch)

    def _filtered(self, allowed: np.ndarray, widen: float):
        """Search parameters restricted to `allowed`, which is 1/widen of the index."""
        import faiss

        sel = _selector(allowed)
        if self.kind == "hnsw-ip":
            # A walk that skips most nodes needs a wider beam to find k allowed ones.
            return faiss.SearchParametersHNSW(sel=sel, efSearch=math.ceil(self._ef() * widen))
        if self.kind == "ivf-ip":
            # Probe more lists in proportion, up to all of them: then every allowed
            # vector is scored (from its codes).
            nprobe = min(int(self._ivf.nlist), math.ceil(self._ivf.nprobe * widen))
            quantizer = faiss.SearchParametersHNSW(efSearch=_quantizer_ef(nprobe))
            return faiss.SearchParametersIVF(sel=sel, nprobe=nprobe, quantizer_params=quantizer)
        return faiss.SearchParameters(sel=sel)

    def _positions(self, ids: np.ndarray) -> np.ndarray:
        """The HNSW graph positions holding these ids; ids not in the graph are left out."""
        at = np.searchsorted(self._ids, ids, sorter=self._order)
        at = self._order[np.minimum(at, len(self._order) - 1)]
        return at[self._ids[at] == ids]

    def _search_subset(
        self, q: np.ndarray, k: int, allowed: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact search over just the allowed vectors of an HNSW index's flat storage."""
        import faiss

        positions = self._positions(allowed)
        if len(positions) == 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        sel = _selector(positions)
        scores, found = self._storage.search(
            q, min(k, len(positions)), params=faiss.SearchParameters(sel=sel)
        )
        keep = found[0] >= 0
        return scores[0][keep], self._ids[found[0][keep]]

    def search_many(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Unfiltered top-k for a batch of queries (-1 pads missing hits): for measuring
        recall, where one FAISS call per batch keeps tuning quick."""
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if (gpu := self._gpu_index(k)) is not None:
            with self._gpu_lock:
                return gpu.search(q, min(k, len(self)))
        return self._index.search(q, min(k, len(self)), params=self._live())

    def _live(self):
        """Search parameters that skip blanked HNSW nodes; None when there are none."""
        import faiss

        if not self.blanked:
            return None
        # IndexIDMap2 applies a selector to the ids it maps positions to: -1 is outside.
        return faiss.SearchParametersHNSW(
            sel=faiss.IDSelectorRange(0, 2**63 - 1), efSearch=self._ef()
        )

    def _gpu_index(self, k: int):
        """The exact index's GPU copy, or None (approximate, small, k past what the GPU
        selects, or no GPU FAISS)."""
        if self.kind != "flat-ip" or len(self) < GPU_MIN or k > GPU_MAX_K:
            return None
        with self._gpu_lock:
            if self._gpu is None:
                self._gpu = _to_gpu(self._index) or False
        return self._gpu or None

    # FAISS reads and writes files itself: for a 2.3 GB HNSW index, read_index(path) took
    # 1.1 s where read_bytes + deserialize_index took 7.8 s (it copies the bytes into a
    # zero-filled vector first), and write_index 0.5 s against serialize_index's 13.9 s.
    def save(self, path: Path) -> str:
        """Write atomically (temp file, fsync, rename); returns the file's sha256."""
        import faiss

        with replacing(path) as tmp:
            if (native := _native(tmp)) is not None:
                faiss.write_index(self._index, native)
            else:
                tmp.write_bytes(faiss.serialize_index(self._index).tobytes())
            checksum = file_sha256(tmp)
        return checksum

    @classmethod
    def load(cls, path: Path) -> tuple[VectorIndex, str]:
        """The index and the sha256 of its file. Index files are never rewritten in place
        (each generation is a new file), so hashing and reading need not be one read."""
        import faiss

        checksum = file_sha256(path)
        if (native := _native(path)) is not None:
            index = faiss.read_index(native)
        else:
            index = faiss.deserialize_index(np.frombuffer(path.read_bytes(), dtype=np.uint8))
        return cls(index), checksum


_GPU_RESOURCES = None


def _to_gpu(index):
    """A copy of `index` on GPU 0, or None when this FAISS build has no GPU support or
    sees no GPU (faiss-cpu answers get_num_gpus() with 0) or the copy does not fit."""
    import faiss

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
    import faiss

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
    import faiss

    mask = np.zeros(int(members.max()) + 1, dtype=bool)
    mask[members] = True
    return faiss.IDSelectorBitmap(np.packbits(mask, bitorder="little"))


def _quantizer_ef(nprobe: int) -> int:
    # The coarse quantizer's own HNSW must return nprobe good lists, not just the first few.
    return max(64, 2 * nprobe)


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
