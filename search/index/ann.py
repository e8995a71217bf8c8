"""Which index a library gets, and tuning it to a recall target (in the spirit of autofaiss).

Small libraries stay exact. Larger ones get an HNSW graph over the full vectors while it
fits the memory budget; beyond that (or past a few million vectors, where HNSW builds
take hours) inverted lists under an HNSW coarse quantizer, with vectors stored whole if
they fit, else as scalar-quantised (SQ8, SQ4) or PQ codes. After building, the search
parameter (efSearch or nprobe) is raised until recall@10 against exact search reaches the
target, measured with library vectors held out of the index as queries.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # FAISS: indexer.training.pairs imports this module for physical_memory alone
    from search.index.vectors import VectorIndex

log = logging.getLogger(__name__)

EXACT = "IDMap2,Flat"
# Below this an exact scan is about as fast as any graph, and IVF cannot train.
MIN_ANN = 1000
# Bytes per vector an HNSW graph adds to the vector itself, per unit of M: 2*M int32 links
# at level 0, and a tenth more for the upper levels; and the two id maps of IndexIDMap2.
HNSW_BYTES_PER_M = 4 * 2 * 1.1
ID_MAP_BYTES = 48
# k-means wants about 39 training points per centroid (FAISS warns below that).
MIN_POINTS_PER_LIST = 39
TRAIN_POINTS_PER_LIST = 64  # more buys little centroid quality for its training time
ADD_SLICE = 100_000
# Past this efSearch a graph search costs about as much as scanning a large slice exactly.
MAX_EF_SEARCH = 2048
# A ×1.5 step of the search parameter that gains less recall than this: stop raising it.
PLATEAU = 0.001


@dataclass(frozen=True)
class IndexPolicy:
    # Fewer vectors than this: exact search (a scan of 50k × 512 takes a few ms).
    ann_threshold: int = 50_000
    target_recall: float = 0.95
    # Bytes the index may take; None means a quarter of physical memory.
    memory_budget: int | None = None
    # More vectors than this: IVF, whose build is minutes where HNSW's would be hours.
    hnsw_max: int = 4_000_000
    hnsw_m: int = 32
    # Build beam width. FAISS defaults to 40, which links strongly clustered vectors poorly
    # across clusters: on 200k of bench/vectors.py's "separated" set, recall@10 needs
    # efSearch 512 to reach 0.95 with 40, and 32 to reach 0.98 with 100 (Qdrant's default),
    # for about twice the build time.
    ef_construction: int = 100
    # Library vectors held out as tuning queries (at most a tenth of the library).
    tuning_queries: int = 1000
    seed: int = 0


@dataclass(frozen=True)
class BuiltIndex:
    index: VectorIndex
    params: dict
    recall_at_10: float | None  # None for an exact index: nothing to measure


def choose_factory(n: int, dim: int, policy: IndexPolicy) -> str:
    """The FAISS index_factory string for n vectors of dim, within the memory budget."""
    if n < max(policy.ann_threshold, MIN_ANN):
        return EXACT
    budget = policy.memory_budget or physical_memory() // 4
    m = policy.hnsw_m
    hnsw_bytes = n * (4 * dim + m * HNSW_BYTES_PER_M + ID_MAP_BYTES)
    if n <= policy.hnsw_max and hnsw_bytes <= budget:
        return f"IDMap2,HNSW{m}"
    nlist = ivf_lists(n)
    fixed = nlist * dim * 4 * 2  # centroids, and the quantizer graph's copy of them
    # Bytes per vector, largest (most exact) first. PQ sub-vectors of 8+ dimensions: with
    # fewer, training (k-means per sub-vector) is slow for what it gains.
    codes = [("Flat", 4 * dim), ("SQ8", dim), ("SQ4", dim // 2)]
    codes += [(f"PQ{dim // s}x8", dim // s) for s in (8, 16) if dim % s == 0]
    fits = [name for name, size in codes if fixed + n * (size + 8) <= budget]  # +8: the id
    if not fits:
        log.warning("no index of %d vectors fits in %d bytes; using the smallest", n, budget)
    return f"IVF{nlist}_HNSW32,{fits[0] if fits else codes[-1][0]}"


def without_polysemous(index):
    """`index` (from faiss.index_factory), set not to train polysemous codes if it is an
    IVF-PQ: that training (annealing a code order fit for Hamming pre-filtering, which no
    search here uses) was most of PQ training time, and the index answers the same without
    it (IVF1024,PQ64 on 100,000 vectors: 60.2 s → 13.3 s; bench/BENCHMARKS.md)."""
    import faiss

    ivf = faiss.try_extract_index_ivf(index)
    ivf = None if ivf is None else faiss.downcast_index(ivf)
    if isinstance(ivf, faiss.IndexIVFPQ):
        ivf.do_polysemous_training = False
    return index


def ivf_lists(n: int) -> int:
    """A power of two near 4·√n (FAISS's guideline), small enough to train on n points."""
    nlist = 2 ** round(np.log2(4 * np.sqrt(n)))
    while nlist > 1 and nlist * MIN_POINTS_PER_LIST > n:
        nlist //= 2
    return nlist


def physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows): assume 8 GiB
        return 8 * 2**30


def build_index(ids: np.ndarray, vectors: np.ndarray, policy: IndexPolicy) -> BuiltIndex:
    """Exact below the policy's threshold; above it approximate and tuned to its target.

    The tuning queries are library vectors held out of the index until tuning is done, so
    they are as new to it as a typed query will be (a vector already in an HNSW graph is
    linked to its own neighbours, which would flatter the recall).
    """
    import faiss

    from search.index.vectors import VectorIndex

    factory = choose_factory(len(ids), vectors.shape[1] if vectors.ndim == 2 else 1, policy)
    if factory == EXACT:
        return BuiltIndex(VectorIndex.build(ids, vectors), {"factory": factory}, None)
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    rng = np.random.default_rng(policy.seed)
    held = np.zeros(len(ids), dtype=bool)
    held[rng.choice(len(ids), min(policy.tuning_queries, len(ids) // 10), replace=False)] = True
    log.info("building a %s index of %d vectors", factory, len(ids))
    raw = without_polysemous(
        faiss.index_factory(vectors.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    )
    params: dict = {"factory": factory}
    if factory.startswith("IDMap2,HNSW"):
        faiss.downcast_index(raw.index).hnsw.efConstruction = policy.ef_construction
        params["efConstruction"] = policy.ef_construction
        values = ladder(16, MAX_EF_SEARCH)
    else:
        nlist = faiss.extract_index_ivf(raw).nlist
        sample = min(len(ids), TRAIN_POINTS_PER_LIST * nlist)
        raw.train(vectors[np.sort(rng.choice(len(ids), sample, replace=False))])
        values = ladder(1, nlist)  # nprobe = nlist scans every list
    index = VectorIndex.wrap(raw)
    _add(index, ids, vectors, np.flatnonzero(~held))
    queries = vectors[held]
    truth = _truth(queries, ids, vectors, held)
    recall = tune(index, values, queries, truth, policy.target_recall)
    _add(index, ids, vectors, np.flatnonzero(held))
    return BuiltIndex(index, {**params, **index.tuning()}, recall)


def tune(
    index: VectorIndex,
    values: list[int],
    queries: np.ndarray,
    truth: np.ndarray,
    target: float,
) -> float:
    """Try the search parameter's values in rising order until recall@10 against `truth`
    (each query's exact top 10 ids) reaches the target, or stops rising (codes that lose
    detail cap it below any target); returns the recall at the value it settles on."""
    settled, best = values[0], -1.0
    for value in values:
        index.tune(value)
        _, found = index.search_many(queries, 10)
        recall = recall_at_10(found, truth)
        log.info("%s=%d: recall@10 %.4f", index.knob, value, recall)
        if recall >= target:
            return recall
        if recall < best + PLATEAU:
            break
        settled, best = value, recall
    index.tune(settled)
    log.warning("recall@10 %.3f is below the %.2f target", best, target)
    return best


def ladder(start: int, stop: int) -> list[int]:
    """start, then steps of about ×1.5 (powers of two and their halfway points), up to stop."""
    steps = {int(b * 2**i) for i in range(32) for b in (1, 1.5)}
    return sorted(v for v in steps if start <= v < stop) + [stop]


def recall_at_10(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each row's 10 true neighbours that appear in its 10 found."""
    hits = [len(np.intersect1d(f[:10][f[:10] >= 0], t[:10])) for f, t in zip(found, truth)]
    return float(np.mean(hits)) / 10


def _add(index: VectorIndex, ids: np.ndarray, vectors: np.ndarray, rows: np.ndarray) -> None:
    # In slices: copying a million selected vectors at once would double peak memory.
    for start in range(0, len(rows), ADD_SLICE):
        part = rows[start : start + ADD_SLICE]
        index.add(ids[part], vectors[part])


def _truth(queries: np.ndarray, ids: np.ndarray, vectors: np.ndarray, held: np.ndarray):
    """Each query's exact top-10 ids among the vectors not held out (-1 padded)."""
    import faiss

    # Held-out vectors are at most a tenth of the library: 10 others are all but certain
    # to be among the nearest 40.
    _, nearest = faiss.knn(queries, vectors, 40, metric=faiss.METRIC_INNER_PRODUCT)
    truth = np.full((len(queries), 10), -1, dtype=np.int64)
    for row, positions in enumerate(nearest):
        kept = positions[(positions >= 0) & ~held[np.maximum(positions, 0)]][:10]
        truth[row, : len(kept)] = ids[kept]
    return truth
