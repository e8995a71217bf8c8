"""The VectorIndex seam: numpy in, (scores, ids) out. FAISS ids are catalog image ids.

Exact inner product over L2-normalised vectors, i.e. cosine similarity.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np


class VectorIndex:
    kind = "flat-ip"

    def __init__(self, index, dim: int) -> None:
        self._index = index
        self.dim = dim

    @classmethod
    def build(cls, ids: np.ndarray, vectors: np.ndarray) -> VectorIndex:
        import faiss

        dim = vectors.shape[1] if vectors.ndim == 2 and vectors.size else 1
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        if len(ids):
            index.add_with_ids(
                np.ascontiguousarray(vectors, dtype=np.float32),
                np.ascontiguousarray(ids, dtype=np.int64),
            )
        return cls(index, dim)

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def search(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) for one query vector, best first; `allowed` restricts the
        hits to those ids. Fewer than k come back when fewer exist."""
        import faiss

        empty = np.zeros(0, np.float32), np.zeros(0, np.int64)
        k = min(k, len(self))
        if k <= 0 or (allowed is not None and len(allowed) == 0):
            return empty
        params = None
        if allowed is not None:
            params = faiss.SearchParameters(
                sel=faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
            )
        q = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
        scores, ids = self._index.search(q, k, params=params)
        keep = ids[0] >= 0
        return scores[0][keep], ids[0][keep]

    def reconstruct(self, image_id: int) -> np.ndarray:
        return self._index.reconstruct(int(image_id))

    def save(self, path: Path) -> str:
        """Write atomically (temp file, fsync, rename); returns the file's sha256."""
        import faiss

        data = faiss.serialize_index(self._index)
        atomic_write(path, data.tobytes())
        return hashlib.sha256(data).hexdigest()

    @classmethod
    def load(cls, path: Path) -> tuple[VectorIndex, str]:
        """Load and checksum in one read of the file."""
        import faiss

        raw = path.read_bytes()
        index = faiss.deserialize_index(np.frombuffer(raw, dtype=np.uint8))
        return cls(index, index.d), hashlib.sha256(raw).hexdigest()


def atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
