"""Serving from shards on a Ray cluster (`imgsearch serve --ray ADDRESS`).

In place of the one FAISS file of search.index.store, a model's vectors become an IVF
index trained once on a sample, filled in shards by Ray tasks (one a CPU of the cluster)
and searched by one Ray actor per shard, their answers merged (search.index.sharded).
Candidates are re-ranked with the exact vectors, kept beside the shards as a float16
memory map, so the scores a search shows are cosines as on one machine; nprobe is tuned
until recall@10 against exact search reaches the library's target.

A new generation is built when the catalog has moved on (an index run anywhere), at the
next query, and swapped in whole; its predecessor's actors and files go. A shard actor
that does not answer makes the search fail with one line naming it, never a quietly
partial answer.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from search.catalog.records import Manifest, utcnow
from search.errors import ImgsearchError
from search.index import sharded

if TYPE_CHECKING:
    from search.catalog.store import Catalog

# Re-ranked candidates per query: enough that PQ's approximate order rarely hides one of
# the true top hits (bench/shard_bench.py: recall@10 0.63 from codes alone, 1.00 with 100).
RERANK = 100
# Below this many vectors a shard holds them whole (IVF-Flat, exact within the lists
# probed); above, product-quantised codes of PQ_BYTES bytes a vector.
PQ_FROM = 20_000
PQ_BYTES = 64
SAMPLE = 100_000  # vectors the coarse (and product) quantisers are trained on
# A later generation reuses the trained quantisers (training is about half of a build: 13 s of
# 25 s on 2 cores at 200,000 vectors, bench/BENCHMARKS.md) until the library has grown
# past this factor of what they were trained for.
RETRAIN_GROWTH = 2.0
TUNE_QUERIES = 200
KIND = "sharded-ivf"


class ShardsUnavailable(ImgsearchError):
    """A shard's actor did not answer: the search would be partial."""


def nlist_for(n: int) -> int:
    """Inverted lists for n vectors: about 4√n, with ≥ 39 training points each (FAISS's
    advice), a power of two."""
    target = max(1, min(4 * int(np.sqrt(n)), n // 39))
    return 1 << (target.bit_length() - 1)


@dataclass
class Generation:
    """A built generation: its folder, the ids and vectors beside the shards, the fan-out."""

    folder: Path
    ids: np.ndarray  # one per stored vector (a video's once per frame), ascending
    vectors: np.ndarray  # float16 (n, dim) memory map, row i is ids[i]'s
    fan: sharded.FanOut
    nprobe: int
    recall_at_10: float
    trained: sharded.faiss.Index  # the empty trained index its shards were filled from
    trained_for: int  # how many vectors it was trained for


class ShardedIndex:
    """The serving side of a Generation, with what the searcher and tagger ask of an index
    (search.index.vectors.VectorIndex): search with an optional id filter, a sample, the
    stored vectors."""

    kind = KIND

    def __init__(self, generation: Generation) -> None:
        self.g = generation

    def __len__(self) -> int:
        return len(self.g.ids)

    @property
    def dim(self) -> int:
        return self.g.vectors.shape[1]

    def ids(self) -> np.ndarray:
        return self.g.ids

    def search(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids), best first, each id once; `allowed` restricts the hits."""
        q = np.ascontiguousarray(query.reshape(-1), dtype=np.float32)
        if allowed is not None:
            # A filter's ids scored exactly, from the vector file: a filter names a part
            # of the library, which a probe of a few lists could miss.
            rows = np.flatnonzero(np.isin(self.g.ids, np.asarray(allowed, dtype=np.int64)))
            return _best(self.g.ids[rows], self.g.vectors[rows] @ q, k)
        depth = min(max(k, RERANK), len(self))
        while True:
            try:
                answer = self.g.fan.search(q[None, :], depth, strict=True)
            except sharded.MissingShards as exc:
                raise ShardsUnavailable(f"search unavailable: {exc} (serve --ray)") from exc
            found = answer.ids[0][answer.ids[0] >= 0]
            candidates = np.unique(found)
            # A video's frames each take a place: read deeper for k distinct ids, unless
            # the shards had no more to give.
            if len(candidates) >= k or len(found) < depth or depth >= len(self):
                break
            depth = min(4 * depth, len(self))
        # Every stored vector of each candidate (a video's frames), scored exactly.
        lo = np.searchsorted(self.g.ids, candidates, "left")
        hi = np.searchsorted(self.g.ids, candidates, "right")
        rows = np.concatenate([np.arange(a, b) for a, b in zip(lo, hi)] or [np.zeros(0, int)])
        return _best(self.g.ids[rows], self.g.vectors[rows] @ q, k)

    def sample(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        rows = np.linspace(0, len(self) - 1, min(n, len(self))).astype(np.int64)
        return self.g.ids[rows], np.asarray(self.g.vectors[rows], dtype=np.float32)

    def stored(self) -> tuple[np.ndarray, np.ndarray]:
        return self.g.ids, np.asarray(self.g.vectors, dtype=np.float32)


def _best(ids: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best ids by their best score (a video's best frame), best first."""
    order = np.argsort(-scores, kind="stable")
    _, first = np.unique(ids[order], return_index=True)
    keep = order[np.sort(first)][:k]
    return scores[keep].astype(np.float32), ids[keep]


class ShardedStore:
    """search.index.store.IndexStore's role for `serve --ray`: a model's index, current
    with the catalog, here as shards on the cluster."""

    def __init__(
        self,
        catalog: Catalog,
        folder: Path,
        ray,
        target_recall: float,
        busy: Callable[[], bool] = lambda: False,
    ) -> None:
        """`busy`: whether an index run is writing (then the loaded generation is served
        as is, as IndexStore does, rather than rebuilt at every commit of the run)."""
        self.catalog = catalog
        self.folder = folder
        self.ray = ray
        self.target_recall = target_recall
        self.busy = busy
        self._loaded: dict[str, tuple[Manifest, ShardedIndex]] = {}
        # The generation before the loaded one, kept until the next swap: a search that
        # took it just before a swap still finds its actors.
        self._previous: dict[str, ShardedIndex] = {}
        self._lock = threading.Lock()

    def manifest(self, model_id: str) -> Manifest | None:
        held = self._loaded.get(model_id)
        return None if held is None else held[0]

    def is_current(self, model_id: str) -> bool:
        held = self._loaded.get(model_id)
        return held is not None and held[0].revision == self.catalog.model_revision(model_id)

    def get(self, model_id: str) -> tuple[Manifest, ShardedIndex]:
        with self._lock:  # one build at a time; later callers find it done
            held = model_id in self._loaded
            if not self.is_current(model_id) and not (held and self.busy()):
                self._swap(model_id, self._build(model_id))
            return self._loaded[model_id]

    def rebuild(self, model_id: str, *, full: bool = False) -> Manifest:
        with self._lock:
            self._swap(model_id, self._build(model_id))
            return self._loaded[model_id][0]

    def close(self) -> None:
        with self._lock:
            for index in [i for _, i in self._loaded.values()] + list(self._previous.values()):
                self._retire(index)
            self._loaded.clear()
            self._previous.clear()

    def _swap(self, model_id: str, built: tuple[Manifest, ShardedIndex]) -> None:
        old = self._loaded.get(model_id)
        self._loaded[model_id] = built
        if (gone := self._previous.pop(model_id, None)) is not None:
            self._retire(gone)
        if old is not None:
            self._previous[model_id] = old[1]

    def _retire(self, index: ShardedIndex) -> None:
        index.g.fan.close()
        shutil.rmtree(index.g.folder, ignore_errors=True)

    def _build(self, model_id: str) -> tuple[Manifest, ShardedIndex]:
        revision = self.catalog.model_revision(model_id)
        ids, vectors = self.catalog.index_vectors(model_id)
        old = self._loaded.get(model_id)
        generation = old[0].generation + 1 if old else 1
        # A folder of this process's own: two servers of one library folder never share one.
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"{model_id.replace('/', '_')}.{generation}-"
        folder = Path(tempfile.mkdtemp(prefix=name, dir=self.folder))
        previous = None if old is None else old[1].g
        g = build(self.ray, ids, vectors, folder, self.target_recall, previous)
        index = ShardedIndex(g)
        manifest = Manifest(
            model_id,
            generation,
            str(folder),
            KIND,
            len(ids),
            "",
            revision,
            utcnow(),
            {"nprobe": index.g.nprobe, "shards": len(index.g.fan.actors)},
            index.g.recall_at_10,
        )
        return manifest, index


def build(
    ray,
    ids: np.ndarray,
    vectors: np.ndarray,
    folder: Path,
    target: float,
    previous: Generation | None = None,
) -> Generation:
    """Train (or take `previous`'s trained quantisers while the library has not outgrown
    them), fill one shard per cluster CPU by Ray tasks, start the shard actors, keep the
    vectors beside them, and tune nprobe to `target` recall@10 against exact search."""
    if len(ids) == 0:
        raise ShardsUnavailable("nothing is indexed yet: run `imgsearch index FOLDER` first")
    folder.mkdir(parents=True, exist_ok=True)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = vectors.shape
    if previous is not None and n <= RETRAIN_GROWTH * previous.trained_for:
        trained, trained_for = previous.trained, previous.trained_for
    else:
        sample = vectors[np.random.default_rng(0).permutation(n)[:SAMPLE]]
        pq = n >= PQ_FROM and dim % PQ_BYTES == 0
        trained, trained_for = sharded.train(sample, nlist_for(n), PQ_BYTES if pq else 0), n
    shards = max(1, min(int(ray.cluster_resources().get("CPU", 1)), n))
    bounds = np.linspace(0, n, shards + 1).astype(np.int64)
    parts = [(ids[a:b], vectors[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    fan = None
    try:
        # The shards go to their actors through the object store, so an actor may run on
        # any node; the vectors for re-ranking stay with this process.
        shards = sharded.fill_on_ray(ray, trained, parts)
        stored = np.lib.format.open_memmap(
            folder / "vectors.f16.npy", mode="w+", dtype=np.float16, shape=(n, dim)
        )
        stored[:] = vectors
        stored.flush()
        fan = sharded.FanOut(ray, shards, nprobe=1)
        generation = Generation(folder, ids, stored, fan, 1, 0.0, trained, trained_for)
        _tune(generation, vectors, target, sharded.faiss.extract_index_ivf(trained).nlist)
        return generation
    except BaseException:
        if fan is not None:
            fan.close()
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _tune(g: Generation, vectors: np.ndarray, target: float, nlist: int) -> None:
    """The smallest nprobe (doubling) whose re-ranked top-10 finds `target` of the exact
    top-10, for stored vectors as queries, each as if new (itself left out of both): as
    search.index.ann tunes with library vectors held out."""
    index = ShardedIndex(g)
    rows = np.linspace(0, len(vectors) - 1, min(TUNE_QUERIES, len(vectors))).astype(np.int64)
    scores = vectors @ vectors[rows].T  # (n, queries): one pass over the library
    for j, r in enumerate(rows):  # each query left out of its own truth (a video: all frames)
        scores[g.ids == g.ids[r], j] = -np.inf
    truth = [_best(g.ids, scores[:, j], 10)[1] for j in range(len(rows))]
    nprobe = 1
    while True:
        g.fan.tune(nprobe)
        found = [index.search(vectors[r], 11)[1] for r in rows]
        found = [f[f != g.ids[r]][:10] for f, r in zip(found, rows)]
        hits = [len(np.intersect1d(f, t)) / max(len(t), 1) for f, t in zip(found, truth)]
        if (recall := float(np.mean(hits))) >= target or nprobe >= nlist:
            g.nprobe, g.recall_at_10 = nprobe, recall
            return
        nprobe = min(2 * nprobe, nlist)
