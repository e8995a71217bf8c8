"""Approximate indexes (search.index.ann): chosen by library size and memory, tuned to a recall
target against exact search, filtered like exact search, and recorded in the manifest."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import faiss
import numpy as np
import pytest

from search.catalog.records import ImageData, Manifest
from search.catalog.store import Catalog
from search.index.ann import IndexPolicy, build_index, choose_factory, ladder, tune
from search.index.store import IndexStore
from search.index.vectors import VectorIndex
from search.models.spec import ModelSpec

DIM = 64
N = 20_000
MODEL = "test-model/random:0123"
GIB = 2**30
# Forces IVF with SQ8 codes for N vectors of DIM (an HNSW graph would take ~12 MB).
SQ8_BUDGET = 2_000_000


def clustered(n: int, seed: int = 0, dim: int = DIM, clusters: int = 40) -> np.ndarray:
    """Unit vectors from a mixture of gaussians, each spread along a few directions of its
    own: clustered like real embeddings, unlike uniform noise (on which ANN recall is poor)."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, dim)).astype(np.float32)
    bases = rng.standard_normal((clusters, 8, dim)).astype(np.float32) / np.sqrt(dim)
    label = rng.integers(0, clusters, n)
    spread = rng.standard_normal((n, 8)).astype(np.float32) * 0.5
    v = centers[label] / np.sqrt(dim) + np.einsum("nr,nrd->nd", spread, bases[label])
    v += 0.02 * rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    return len(np.intersect1d(a, b)) / max(1, len(b))


@pytest.fixture(scope="module")
def data():
    vecs = clustered(N + 100)
    # Sparse ids, as a catalog's are after deletions; queries are not in the library.
    ids = np.arange(N, dtype=np.int64) * 3 + 7
    return ids, vecs[:N], vecs[N:]


@pytest.fixture(scope="module")
def exact(data):
    ids, vecs, _ = data
    return VectorIndex.build(ids, vecs)


@pytest.fixture(scope="module", params=["hnsw-ip", "ivf-ip"])
def built(request, data):
    ids, vecs, _ = data
    budget = None if request.param == "hnsw-ip" else SQ8_BUDGET
    result = build_index(ids, vecs, IndexPolicy(ann_threshold=10_000, memory_budget=budget))
    assert result.index.kind == request.param
    return result


# -- choosing ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "n, dim, policy, factory",
    [
        (49_999, 512, IndexPolicy(memory_budget=8 * GIB), "IDMap2,Flat"),
        (50_000, 512, IndexPolicy(memory_budget=8 * GIB), "IDMap2,HNSW32"),
        (1_000_000, 512, IndexPolicy(memory_budget=8 * GIB), "IDMap2,HNSW32"),
        (1_000_000, 512, IndexPolicy(memory_budget=2 * GIB), "IVF4096_HNSW32,Flat"),
        (1_000_000, 512, IndexPolicy(memory_budget=1 * GIB), "IVF4096_HNSW32,SQ8"),
        (10_000_000, 512, IndexPolicy(memory_budget=4 * GIB), "IVF16384_HNSW32,SQ4"),
        (10_000_000, 512, IndexPolicy(memory_budget=2 * GIB), "IVF16384_HNSW32,PQ64x8"),
        (5_000_000, 512, IndexPolicy(memory_budget=64 * GIB), "IVF8192_HNSW32,Flat"),
        (2_000, 64, IndexPolicy(ann_threshold=1_000, hnsw_m=16), "IDMap2,HNSW16"),
        # Below MIN_ANN an exact scan is as fast whatever the threshold says.
        (500, 64, IndexPolicy(ann_threshold=0), "IDMap2,Flat"),
    ],
)
def test_the_index_is_chosen_by_size_and_memory(n, dim, policy, factory) -> None:
    assert choose_factory(n, dim, policy) == factory


def test_ladder_rises_by_about_half_up_to_its_stop() -> None:
    assert ladder(16, 100) == [16, 24, 32, 48, 64, 96, 100]
    assert ladder(1, 8) == [1, 2, 3, 4, 6, 8]


# -- agreement with exact search ----------------------------------------------------------------
def test_approximate_search_agrees_with_exact_search(built, data, exact) -> None:
    ids, _, queries = data
    assert built.recall_at_10 >= 0.95
    knob = built.index.knob
    assert built.params[knob] == built.index.tuning()[knob]
    threads = faiss.omp_get_max_threads()
    recalls = [overlap(built.index.search(q, 10)[1], exact.search(q, 10)[1]) for q in queries]
    assert np.mean(recalls) >= 0.95
    assert faiss.omp_get_max_threads() == threads  # one query runs single-threaded, then back
    scores, found = built.index.search(queries[0], 10)
    assert np.isin(found, ids).all() and np.all(np.diff(scores) <= 1e-6)


def test_tuning_raises_the_search_parameter_until_the_target_is_met() -> None:
    ids = np.arange(5000, dtype=np.int64)
    vecs, queries = np.split(clustered(5200, seed=1, clusters=5), [5000])
    # A sparse graph (few links, a narrow build beam) needs a wide search to find neighbours.
    sparse = IndexPolicy(ann_threshold=1000, hnsw_m=8, ef_construction=16, target_recall=0.5)
    loose = build_index(ids, vecs, sparse)
    assert loose.params["efSearch"] == 16  # the first step already meets it
    assert loose.recall_at_10 < 0.95
    _, truth = VectorIndex.build(ids, vecs).search_many(queries, 10)
    assert tune(loose.index, ladder(16, 2048), queries, truth, 0.97) >= 0.97
    assert loose.index.tuning()["efSearch"] > 16


def test_tuning_settles_below_target_when_codes_cap_recall() -> None:
    """Coarse PQ codes cannot reach 0.95: tuning stops where recall stops rising, and the
    recall it reports is the one measured there, not the target."""
    ids = np.arange(3000, dtype=np.int64)
    vecs = clustered(3000, seed=2, dim=16)
    got = build_index(ids, vecs, IndexPolicy(ann_threshold=1000, memory_budget=20_000))
    assert got.params["factory"] == "IVF64_HNSW32,PQ1x8"  # 1 byte a vector
    # No polysemous codes were trained: most of PQ training time, for a filter never used.
    assert not faiss.downcast_index(
        faiss.extract_index_ivf(got.index._index)
    ).do_polysemous_training
    assert 0 < got.recall_at_10 < 0.95
    assert got.params["nprobe"] < 64  # stopped before scanning every list


# -- filtered search ---------------------------------------------------------------------------
@pytest.mark.parametrize("share", [0.002, 0.05, 0.4])
def test_filtered_search_returns_only_allowed_ids_and_matches_exact(
    built, data, exact, share
) -> None:
    ids, _, queries = data
    rng = np.random.default_rng(7)
    allowed = np.sort(rng.choice(ids, int(len(ids) * share), replace=False))
    # Ids the index does not hold (deleted since, or another model's) are harmless.
    asked = np.concatenate([allowed, allowed[:20] + 1])
    recalls = []
    for q in queries[:30]:
        _, found = built.index.search(q, 10, asked)
        _, truth = exact.search(q, 10, allowed)
        assert np.isin(found, allowed).all() and len(found) == 10
        recalls.append(overlap(found, truth))
    assert np.mean(recalls) >= 0.95


@pytest.mark.parametrize("built", ["hnsw-ip"], indirect=True)
def test_a_small_allowed_set_is_searched_exactly_on_hnsw(built, data, exact) -> None:
    """(IVF scores allowed vectors from their codes, so only HNSW can be exact here.)"""
    ids, _, queries = data
    allowed = ids[::500]
    for q in queries[:10]:
        got, want = built.index.search(q, 5, allowed), exact.search(q, 5, allowed)
        np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_allclose(got[0], want[0], rtol=1e-5)
    assert len(built.index.search(queries[0], 5, allowed + 1)[1]) == 0  # none held


def test_a_sample_holds_only_current_vectors(data) -> None:
    """The relevance cutoff's sample of the library: removed images' vectors (kept in an
    HNSW graph as blanked nodes) are not in it."""
    ids, vecs, _ = data
    result = build_index(ids, vecs, IndexPolicy(ann_threshold=10_000))
    index = result.index
    assert index.kind == "hnsw-ip"
    removed = ids[::2]
    index.remove(removed)
    assert index.blanked == len(removed)
    got_ids, sample = index.sample(len(ids))
    kept = ~np.isin(ids, removed)
    assert sorted(got_ids.tolist()) == sorted(ids[kept].tolist())
    # Each sampled vector with its own image's id (the cutoff reads those images' captions).
    at = {int(i): row for row, i in enumerate(ids)}
    np.testing.assert_allclose(sample, vecs[[at[int(i)] for i in got_ids]], atol=1e-6)
    assert len(index.sample(10)[1]) == 10


def test_a_sample_from_codes_names_each_vector_s_image(built, data) -> None:
    """HNSW samples its stored vectors, IVF decodes them from the codes: either way each
    row comes with the id of the image whose vector it approximates."""
    ids, vecs, _ = data
    got_ids, sample = built.index.sample(200)
    assert len(got_ids) == len(sample) == 200 and len(set(got_ids.tolist())) == 200
    at = {int(i): row for row, i in enumerate(ids)}
    own = np.einsum("ij,ij->i", sample, vecs[[at[int(i)] for i in got_ids]])
    assert own.min() > 0.9  # PQ codes approximate; another image's vector would be far off


@pytest.mark.parametrize("threshold", [10_000, 10**9])  # an HNSW graph, an exact index
def test_stored_gives_each_current_vector_with_its_id(data, threshold) -> None:
    """What tags score the library with: every current vector beside its image id, none
    of a removed image's."""
    ids, vecs, _ = data
    index = build_index(ids, vecs, IndexPolicy(ann_threshold=threshold)).index
    removed = ids[1::3]
    index.remove(removed)
    got_ids, got = index.stored()
    keep = ~np.isin(ids, removed)
    assert sorted(got_ids.tolist()) == sorted(ids[keep].tolist())
    by_id = dict(zip(ids.tolist(), vecs))
    np.testing.assert_allclose(got, np.stack([by_id[i] for i in got_ids.tolist()]), atol=1e-6)


# -- saving and the manifest ---------------------------------------------------------------------
def test_save_and_load_keep_the_tuned_parameter(built, data, tmp_path) -> None:
    ids, _, queries = data
    path = tmp_path / "index.faiss"
    checksum = built.index.save(path)
    loaded, loaded_checksum = VectorIndex.load(path)
    assert loaded_checksum == checksum
    assert (loaded.kind, loaded.tuning()) == (built.index.kind, built.index.tuning())
    allowed = ids[::3]
    for q in queries[:5]:
        for a, b in zip(built.index.search(q, 10), loaded.search(q, 10)):
            np.testing.assert_array_equal(a, b)
        for a, b in zip(built.index.search(q, 10, allowed), loaded.search(q, 10, allowed)):
            np.testing.assert_array_equal(a, b)


def image(root_id: int, i: int) -> ImageData:
    return ImageData(
        root_id, f"/photos/{i:05}.jpg", 10, 1, f"hash{i}", 64, 64, None, datetime(2021, 1, 1)
    )


def test_store_picks_exact_below_the_threshold_and_approximate_above(tmp_path) -> None:
    catalog = Catalog.open(tmp_path / "catalog.db")
    try:
        catalog.ensure_model(MODEL, ModelSpec("m", "none"), 32)
        root = catalog.add_root("/photos").id
        vecs = clustered(3000, seed=3, dim=32)
        catalog.write_batch(MODEL, [image(root, i) for i in range(1500)], vecs[:1500])
        policy = IndexPolicy(ann_threshold=2000)
        store = IndexStore(catalog, tmp_path / "index", policy=policy)

        small = store.rebuild(MODEL)
        assert (small.kind, small.params, small.recall_at_10) == (
            "flat-ip",
            {"factory": "IDMap2,Flat"},
            None,
        )

        catalog.write_batch(MODEL, [image(root, i) for i in range(1500, 3000)], vecs[1500:])
        large = store.rebuild(MODEL)
        assert large.kind == "hnsw-ip" and large.count == 3000
        assert large.params["factory"] == "IDMap2,HNSW32"
        assert large.params["efSearch"] >= 16 and large.recall_at_10 >= 0.95
        assert catalog.manifest(MODEL) == large  # params and recall survive the catalog

        # Another process loads the file, searching with the manifest's parameter.
        manifest, index = IndexStore(catalog, tmp_path / "index", policy=policy).get(MODEL)
        assert manifest == large
        assert index.tuning() == {"efSearch": large.params["efSearch"]}
        catalog.set_manifest(replace(large, params={**large.params, "efSearch": 123}))
        _, index = IndexStore(catalog, tmp_path / "index", policy=policy).get(MODEL)
        assert index.tuning() == {"efSearch": 123}
        assert catalog.manifest(MODEL).generation == large.generation  # loaded, not rebuilt
    finally:
        catalog.close()


@pytest.mark.parametrize("kind, budget", [("hnsw-ip", None), ("ivf-ip", 1_500_000)])
def test_a_small_change_updates_the_index_instead_of_building_it(
    tmp_path, monkeypatch, kind, budget
) -> None:
    """Removed, re-embedded and new images reach an approximate index without a build:
    removed ids never come back, a re-embedded image is found by its new vector only, and
    search still agrees with exact search over the catalog, also after a reload."""
    import search.index.store

    catalog = Catalog.open(tmp_path / "catalog.db")
    try:
        catalog.ensure_model(MODEL, ModelSpec("m", "none"), 32)
        root = catalog.add_root("/photos").id
        vecs = clustered(7000, seed=5, dim=32)
        ids = catalog.write_batch(MODEL, [image(root, i) for i in range(6000)], vecs[:6000])
        policy = IndexPolicy(ann_threshold=2000, memory_budget=budget)
        store = IndexStore(catalog, tmp_path / "index", policy=policy)
        first = store.rebuild(MODEL)
        assert first.kind == kind and "updates" not in first.params

        removed = ids[:100]
        catalog.remove_images(removed)
        changed = ids[100:250]  # the same files, new content
        catalog.write_batch(MODEL, [image(root, i) for i in range(100, 250)], vecs[6000:6150])
        added = catalog.write_batch(
            MODEL, [image(root, i) for i in range(6000, 6250)], vecs[6150:6400]
        )

        def no_build(*args):
            raise AssertionError("built anew although little changed")

        monkeypatch.setattr(search.index.store, "build_index", no_build)
        second = store.rebuild(MODEL)
        monkeypatch.undo()
        assert (second.generation, second.count, second.params["updates"]) == (2, 6150, 1)
        assert second.params.get("blanked", 0) == (250 if kind == "hnsw-ip" else 0)
        assert second.recall_at_10 == first.recall_at_10  # as measured when built

        all_ids, all_vecs = catalog.vectors(MODEL)
        exact = VectorIndex.build(all_ids, all_vecs)
        for reload in (False, True):
            index = (
                IndexStore(catalog, tmp_path / "index", policy=policy).get(MODEL)[1]
                if reload
                else store.get(MODEL)[1]
            )
            assert len(index) == 6150
            np.testing.assert_array_equal(index.ids(), all_ids)
            queries = vecs[6400:6600]
            recalls = [overlap(index.search(q, 10)[1], exact.search(q, 10)[1]) for q in queries]
            assert np.mean(recalls) >= 0.95
            for old in vecs[:100]:  # a removed image's own vector finds it no more
                found = index.search(old, 10)[1]
                assert len(found) == 10 and not np.isin(found, removed).any()
            new_of = dict(zip(changed, vecs[6000:6150], strict=True))
            for image_id, old in zip(changed[:30], vecs[100:130], strict=True):
                scores, found = index.search(new_of[image_id], 1)
                assert found[0] == image_id and scores[0] > 0.99
                # Found by its old vector only at its new vector's score (codes: within SQ8).
                scores, found = index.search(old, 20)
                for score, hit in zip(scores, found, strict=True):
                    if hit == image_id:
                        assert abs(score - float(old @ new_of[image_id])) < 0.02
            allowed = np.concatenate([changed[:20], added[:20]])
            _, only = index.search(vecs[6500], 10, allowed=allowed)
            assert len(only) == 10 and np.isin(only, allowed).all()

        # A change to more than a tenth of the library builds anew.
        catalog.remove_images(ids[300:1000])
        third = store.rebuild(MODEL)
        assert third.generation == 3 and "updates" not in third.params
        assert third.count == 6150 - 700
    finally:
        catalog.close()


def test_threads_finding_the_index_stale_build_it_once(tmp_path, monkeypatch) -> None:
    import threading
    import time

    import search.index.store

    catalog = Catalog.open(tmp_path / "catalog.db")
    try:
        catalog.ensure_model(MODEL, ModelSpec("m", "none"), 32)
        root = catalog.add_root("/photos").id
        catalog.write_batch(MODEL, [image(root, i) for i in range(50)], clustered(50, dim=32))
        store = IndexStore(catalog, tmp_path / "index")
        builds = []
        real = search.index.store.build_index

        def slow_build(*args):
            builds.append(1)
            time.sleep(0.3)
            return real(*args)

        monkeypatch.setattr(search.index.store, "build_index", slow_build)
        readers = [threading.Thread(target=store.get, args=(MODEL,)) for _ in range(4)]
        for t in readers:
            t.start()
        for t in readers:
            t.join()
        assert len(builds) == 1 and catalog.manifest(MODEL).generation == 1
        assert store.rebuild(MODEL, full=True).generation == 2  # asked for: built anyway
    finally:
        catalog.close()


def test_status_shows_the_index_kind_params_and_recall(library) -> None:
    cat = library.catalog
    cat.ensure_model(MODEL, ModelSpec("m", "none"), DIM)
    library.set_serving(MODEL)
    params = {"factory": "IDMap2,HNSW32", "efConstruction": 40, "efSearch": 48}
    cat.set_manifest(
        Manifest(MODEL, 2, "x.2.faiss", "hnsw-ip", 60_000, "ab" * 32, 0, datetime(2024, 1, 1))
    )
    assert library.status().index.params is None
    first = cat.manifest(MODEL)
    cat.set_manifest(replace(first, generation=3, params=params, recall_at_10=0.97))
    index = library.status().index
    assert (index.kind, index.params, index.recall_at_10) == ("hnsw-ip", params, 0.97)


class _FakeGpuIndex:
    """Stands in for a GPU copy: a CPU clone that counts the searches it answers."""

    def __init__(self, index) -> None:
        self.inner = faiss.clone_index(index)
        self.searches = 0

    def search(self, q, k):
        self.searches += 1
        return self.inner.search(q, k)


def test_exact_index_searches_on_the_gpu_copy_when_faiss_sees_a_gpu(monkeypatch):
    """faiss-gpu's wiring, with its three entry points faked (no GPU here): unfiltered
    searches of a large exact index go to the copy, with the same answers; filtered ones,
    small indexes and graphs stay on the CPU."""
    import search.index.vectors as vi

    copies = []

    def to_gpu(res, device, index):
        copies.append(_FakeGpuIndex(index))
        return copies[-1]

    monkeypatch.setattr(faiss, "StandardGpuResources", object, raising=False)
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1)
    monkeypatch.setattr(faiss, "index_cpu_to_gpu", to_gpu, raising=False)
    monkeypatch.setattr(vi, "_GPU_RESOURCES", None)
    vectors = clustered(vi.GPU_MIN)
    ids = np.arange(vi.GPU_MIN, dtype=np.int64) * 3 + 7
    index = VectorIndex.build(ids, vectors)
    query = vectors[5]

    scores, found = index.search(query, 10)
    assert found[0] == ids[5] and len(copies) == 1 and copies[0].searches == 1
    exact = np.argsort(-(vectors @ query))[:10]
    np.testing.assert_array_equal(found, ids[exact])
    index.search_many(vectors[:3], 10)
    assert copies[0].searches == 2 and len(copies) == 1  # copied once, reused

    _, only = index.search(query, 10, allowed=ids[100:200])
    assert set(only) <= set(ids[100:200]) and copies[0].searches == 2
    # Past the GPU's largest k (a deep results page) the CPU answers.
    _, deep = index.search(query, vi.GPU_MAX_K + 1)
    assert len(deep) == vi.GPU_MAX_K + 1 and copies[0].searches == 2

    small = VectorIndex.build(ids[:100], vectors[:100])
    small.search(query, 10)
    graph = build_index(ids, vectors, IndexPolicy(ann_threshold=1000)).index
    graph.search(query, 10)
    assert len(copies) == 1


def test_the_library_takes_its_index_policy_from_settings(tmp_path) -> None:
    from search.errors import ConfigError
    from search.library import Library
    from search.settings import Settings

    env = {"IMGSEARCH_ANN_THRESHOLD": "1000", "IMGSEARCH_TARGET_RECALL": "0.99"}
    with Library(Settings.load(env, home=tmp_path)) as lib:
        assert (lib.store.policy.ann_threshold, lib.store.policy.target_recall) == (1000, 0.99)
    with pytest.raises(ConfigError, match="TARGET_RECALL"):
        Settings.load({"IMGSEARCH_TARGET_RECALL": "1.5"}, home=tmp_path)
