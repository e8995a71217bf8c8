"""IVF-PQ indexes built in shards by Ray tasks (search.index.sharded): merged on disk and
fanned out over shard actors, they answer as the index filled in one process does."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import ray
from raytests import deadline, ray_processes

from search.index import sharded

LIMIT_S = 180


@pytest.fixture(scope="module")
def local_ray():
    with deadline(LIMIT_S):  # the whole module's
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            yield ray
        finally:
            ray.shutdown()
    assert not ray_processes(), "Ray processes left behind"


def clustered(n: int, rng: np.random.Generator, dim: int = 64) -> np.ndarray:
    """Unit vectors in 40 clusters, as image embeddings group by subject."""
    centres = rng.standard_normal((40, dim))
    x = centres[rng.integers(0, 40, n)] + 0.6 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def built(local_ray, tmp_path_factory):
    rng = np.random.default_rng(0)
    vectors = clustered(12_000, rng)
    ids = np.arange(10, 10 + len(vectors), dtype=np.int64) * 3  # ids are not positions
    queries = clustered(40, rng)
    trained = sharded.train(vectors[rng.permutation(len(vectors))[:4000]], nlist=32, pq_m=16)
    # No polysemous codes (13 s of this training when they were): no search uses them.
    ivf = sharded.faiss.downcast_index(sharded.faiss.extract_index_ivf(trained))
    assert not ivf.do_polysemous_training
    alone = sharded.faiss.clone_index(trained)
    alone.add_with_ids(vectors, ids)
    sharded.faiss.extract_index_ivf(alone).nprobe = 8
    parts = [(ids[a:b], vectors[a:b]) for a, b in ((0, 5000), (5000, 9000), (9000, 12_000))]
    folder = tmp_path_factory.mktemp("shards")
    paths = sharded.write_shards(sharded.fill_on_ray(local_ray, trained, parts), folder)
    merged = sharded.open_merged(sharded.merge_on_disk(trained, paths, folder), nprobe=8)
    return vectors, ids, queries, alone, paths, merged


def kill(ray_module, actor) -> None:
    """Kill a shard's actor and wait until it is dead (ray.kill only asks)."""
    ray_module.kill(actor, no_restart=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            ray_module.get(actor.__ray_ready__.remote(), timeout=5)
        except ray.exceptions.RayActorError:
            return
        except ray.exceptions.GetTimeoutError:
            pass
        time.sleep(0.05)
    raise AssertionError("the actor did not die")


def same_answers(a: tuple, b: tuple) -> None:
    """Equal scores, and equal ids wherever a score is not tied within its row."""
    (sa, ia), (sb, ib) = a, b
    np.testing.assert_array_equal(sa, sb)
    for row_s, row_a, row_b in zip(sa, ia, ib, strict=True):
        unique = [i for i, s in enumerate(row_s) if list(row_s).count(s) == 1]
        assert [row_a[i] for i in unique] == [row_b[i] for i in unique]


def test_merged_on_disk_answers_as_one_index(built):
    vectors, ids, queries, alone, _, merged = built
    assert merged.ntotal == len(vectors)
    same_answers(merged.search(queries, 10), alone.search(queries, 10))


def test_fan_out_answers_as_one_index_and_names_a_missing_shard(local_ray, built):
    _, _, queries, alone, paths, _ = built
    fan = sharded.FanOut(local_ray, paths, nprobe=8)
    answer = fan.search(queries, 10)
    assert answer.missing == []
    same_answers((answer.scores, answer.ids), alone.search(queries, 10))
    kill(local_ray, fan.actors[1])
    with pytest.raises(sharded.MissingShards, match=r"shards \[1\] of 3"):
        fan.search(queries, 10)
    partial = fan.search(queries, 10, strict=False)
    assert partial.missing == [1] and partial.ids.shape == (len(queries), 10)
    # What the partial answer holds comes from the shards that answered, only.
    lost = set(range(5000, 9000))
    positions = {int(i): n for n, i in enumerate(built[1])}
    assert not any(positions[int(i)] in lost for i in partial.ids.ravel() if i >= 0)


def test_rerank_with_stored_vectors_recovers_the_exact_top_10(built):
    vectors, ids, queries, alone, _, merged = built
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    exact_ids = ids[exact]
    position = {int(i): n for n, i in enumerate(ids)}

    def vectors_of(found: np.ndarray) -> np.ndarray:
        return vectors[[position[int(i)] for i in found]]

    def recall(found: np.ndarray) -> float:
        return np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, exact_ids, strict=True)])

    ivf = sharded.faiss.extract_index_ivf(merged)
    ivf.nprobe = ivf.nlist  # every list: what is left to recover is the PQ's error
    try:
        _, approximate = merged.search(queries, 10)
        _, candidates = merged.search(queries, 100)
    finally:
        ivf.nprobe = 8
    _, reranked = sharded.rerank(queries, candidates, vectors_of, 10)
    assert recall(reranked) >= 0.95 > recall(approximate)


def test_a_sharded_store_follows_the_catalog_and_names_a_lost_shard(local_ray, tmp_path):
    """search.index.fanout: built from the catalog's vectors, searched as exact search
    does, a new generation when the catalog moves on (the old one's actors and files gone),
    and a shard actor that does not answer is an error naming it."""
    from datetime import datetime

    from search.catalog.records import ImageData
    from search.catalog.store import Catalog
    from search.index.fanout import ShardedStore, ShardsUnavailable
    from search.models.spec import ModelSpec

    rng = np.random.default_rng(1)
    cat = Catalog.open(tmp_path / "catalog.db")
    root = cat.add_root("/p")
    cat.ensure_model("m", ModelSpec("m"), 64)
    when = datetime(2020, 1, 1)

    def add(vectors: np.ndarray, start: int) -> None:
        n = len(vectors)
        images = [
            ImageData(root.id, f"/p/{start + i}.jpg", 1, 1, str(start + i), 1, 1, None, when)
            for i in range(n)
        ]
        cat.write_batch("m", images, vectors)

    # Queries from the library's own distribution, not in it (as a typed query is new).
    library = clustered(3530, rng)
    add(library[:3000], 0)
    store = ShardedStore(cat, tmp_path / "shards", local_ray, target_recall=0.95)
    try:
        first, index = store.get("m")
        assert (first.kind, first.count, first.params["shards"]) == ("sharded-ivf", 3000, 2)
        assert first.recall_at_10 >= 0.95 and first.params["nprobe"] < 32
        ids, vectors = cat.vectors("m")
        queries = library[3500:]
        hits = [set(index.search(q, 10)[1].tolist()) for q in queries]
        exact = [set(ids[np.argsort(-(vectors @ q))[:10]].tolist()) for q in queries]
        assert np.mean([len(h & e) / 10 for h, e in zip(hits, exact)]) >= 0.9
        # Scores are the exact cosines; a filter is honoured exactly.
        scores, found = index.search(queries[0], 5, allowed=ids[:100])
        assert set(found.tolist()) <= set(ids[:100].tolist())
        position = {int(i): n for n, i in enumerate(ids)}
        np.testing.assert_allclose(
            scores, vectors[[position[int(i)] for i in found]] @ queries[0], atol=2e-3
        )
        add(library[3000:3250], 3000)  # another machine's index run
        second, index = store.get("m")
        assert (second.generation, second.count) == (2, 3250)
        # The generation before stays one more swap (a search may have just taken it).
        assert Path(first.filename).is_dir() and Path(second.filename).is_dir()
        store.busy = lambda: True  # an index run is writing: the loaded one is served
        add(library[3250:3500], 3250)
        assert store.get("m")[0] is second
        store.busy = lambda: False
        third, index = store.get("m")
        assert (third.generation, third.count) == (3, 3500)
        assert not Path(first.filename).exists() and Path(second.filename).is_dir()
        kill(local_ray, index.g.fan.actors[1])
        with pytest.raises(ShardsUnavailable, match=r"shards \[1\] of 2 did not answer"):
            index.search(queries[0], 10)
    finally:
        store.close()
        cat.close()
    assert not (tmp_path / "shards").exists() or not any((tmp_path / "shards").iterdir())


def test_shards_answer_k_distinct_ids_when_an_id_has_many_vectors(local_ray, tmp_path):
    """A video's frames share its id: the search reads deeper until it has k ids."""
    from search.index import fanout

    rng = np.random.default_rng(2)
    vectors = clustered(1200, rng)
    ids = np.repeat(np.arange(1, 301, dtype=np.int64), 4)  # 300 "videos" of 4 frames
    g = fanout.build(local_ray, ids, vectors, tmp_path / "g", 0.95)
    try:
        assert g.recall_at_10 >= 0.95  # frames of the query's own video left out of truth
        index = fanout.ShardedIndex(g)
        for q in clustered(5, rng):
            scores, found = index.search(q, 40)
            assert len(found) == len(set(found.tolist())) == 40
            assert np.all(np.diff(scores) <= 0)
    finally:
        g.fan.close()
