"""Vector indexes past one machine's memory: IVF-PQ trained once, filled in shards by Ray
tasks, then served merged on disk (memory-mapped inverted lists, one node) or by one Ray
actor per shard with the answers merged (fan-out).

As autofaiss builds LAION's indexes: the coarse quantiser and the product quantiser are
trained once, on a sample; that trained, empty index is what every shard task starts
from, so the shards' codes are comparable and merging them is concatenating inverted
lists. A merged index and a fan-out over its shards therefore answer as one index filled
in one process would, at the same nprobe. Scores are PQ approximations: re-ranking the
best candidates with the stored vectors (`rerank`) is what brings recall@10 to the target
(bench/shard_bench.py). A shard that does not answer is named in the answer
(`FanOut.search`'s `missing`), and `strict` makes it an error: never a silent partial
answer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from search.index.ann import without_polysemous


class MissingShards(RuntimeError):
    """Shards that did not answer a strict search."""


def train(sample: np.ndarray, nlist: int, pq_m: int) -> faiss.Index:
    """An empty IVF index (inner product over unit vectors) trained on `sample`: its vectors
    product-quantised to `pq_m` bytes, or with `pq_m` 0 kept whole."""
    codes = f"PQ{pq_m}x8" if pq_m else "Flat"
    index = without_polysemous(
        faiss.index_factory(sample.shape[1], f"IVF{nlist},{codes}", faiss.METRIC_INNER_PRODUCT)
    )
    index.train(np.ascontiguousarray(sample, dtype=np.float32))
    return index


def fill(trained: np.ndarray, ids: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """One shard: the trained index (serialised) with `vectors` added under `ids`."""
    index = faiss.deserialize_index(trained)
    index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids.astype(np.int64))
    return faiss.serialize_index(index)


def fill_on_ray(
    ray, trained: faiss.Index, parts: Sequence[tuple[np.ndarray, np.ndarray]]
) -> list[np.ndarray]:
    """Every (ids, vectors) part filled into its own shard by a Ray task (one CPU each);
    the trained index travels once through the object store."""
    task = ray.remote(num_cpus=1, max_retries=3)(fill)
    blob = ray.put(faiss.serialize_index(trained))
    return ray.get([task.remote(blob, ids, vectors) for ids, vectors in parts])


def write_shards(shards: Sequence[np.ndarray], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n, shard in enumerate(shards):
        path = folder / f"shard-{n:04d}.faiss"
        faiss.write_index(faiss.deserialize_index(shard), str(path))
        paths.append(path)
    return paths


def merge_on_disk(trained: faiss.Index, shard_paths: Sequence[Path], folder: Path) -> Path:
    """The shards' inverted lists merged into one on-disk index (`merged.faiss`, its
    lists in `merged.ivfdata`), which `open_merged` memory-maps."""
    from faiss.contrib.ondisk import merge_ondisk

    index = faiss.clone_index(trained)
    merge_ondisk(index, [str(p) for p in shard_paths], str(folder / "merged.ivfdata"))
    path = folder / "merged.faiss"
    faiss.write_index(index, str(path))
    return path


def open_merged(path: Path, nprobe: int) -> faiss.Index:
    """The merged index; its on-disk inverted lists map their file themselves (FAISS's
    mmap flag on top crashes the search)."""
    return _probing(faiss.read_index(str(path), faiss.IO_FLAG_READ_ONLY), nprobe)


def open_shard(path: Path, nprobe: int) -> faiss.Index:
    """One shard, its inverted lists memory-mapped."""
    return _probing(faiss.read_index(str(path), faiss.IO_FLAG_MMAP), nprobe)


def _probing(index: faiss.Index, nprobe: int) -> faiss.Index:
    faiss.extract_index_ivf(index).nprobe = nprobe
    return index


def rerank(
    queries: np.ndarray, ids: np.ndarray, vectors_of: Callable[[np.ndarray], np.ndarray], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The candidates `ids` (one row a query, -1 for none) ordered by their exact inner
    product with the query; the best `k` of each row. `vectors_of` gives stored vectors
    by id (a memory map, say)."""
    scores = np.full(ids.shape, -np.inf, dtype=np.float32)
    for row, (query, candidates) in enumerate(zip(queries, ids, strict=True)):
        known = candidates >= 0
        scores[row, known] = vectors_of(candidates[known]) @ query
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)


class ShardServer:
    """A Ray actor holding one shard: a file memory-mapped (on a node that sees it), or
    the shard itself, sent through the object store (any node)."""

    def __init__(self, shard: str | np.ndarray, nprobe: int) -> None:
        if isinstance(shard, str):
            self.index = open_shard(Path(shard), nprobe)
        else:
            self.index = _probing(faiss.deserialize_index(shard), nprobe)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.index.search(queries, k)

    def tune(self, nprobe: int) -> None:
        _probing(self.index, nprobe)


@dataclass
class Answer:
    scores: np.ndarray
    ids: np.ndarray
    missing: list[int]  # shards that did not answer: the answer is partial when any


class FanOut:
    """One query sent to every shard's actor, the best `k` of their answers kept."""

    def __init__(self, ray, shards: Sequence[Path | np.ndarray], nprobe: int) -> None:
        """`shards`: files (memory-mapped where the actor runs: a path every node sees) or
        serialised shards (sent to whichever node the actor lands on)."""
        self.ray = ray
        actor = ray.remote(num_cpus=0)(ShardServer)
        self.actors = [actor.remote(str(s) if isinstance(s, Path) else s, nprobe) for s in shards]

    def tune(self, nprobe: int) -> None:
        self.ray.get([a.tune.remote(nprobe) for a in self.actors])

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)
        self.actors = []

    def search(
        self, queries: np.ndarray, k: int, *, timeout: float = 30.0, strict: bool = True
    ) -> Answer:
        ray = self.ray
        if not self.actors:
            raise MissingShards("the index's shards were closed")
        refs = [a.search.remote(queries, k) for a in self.actors]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout)
        done = set(ready)
        parts, missing = [], []
        for n, ref in enumerate(refs):
            try:
                if ref not in done:
                    raise TimeoutError
                parts.append(ray.get(ref))
            except (TimeoutError, ray.exceptions.RayError):
                missing.append(n)
        if missing and strict:
            raise MissingShards(f"shards {missing} of {len(refs)} did not answer")
        if not parts:
            empty = np.zeros((len(queries), 0))
            return Answer(empty.astype(np.float32), empty.astype(np.int64), missing)
        scores = np.concatenate([p[0] for p in parts], axis=1)
        ids = np.concatenate([p[1] for p in parts], axis=1)
        scores[ids < 0] = -np.inf
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return Answer(
            np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1), missing
        )
