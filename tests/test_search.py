"""The read path: every kind of query equals a brute-force cosine top-k over the catalog."""

from __future__ import annotations

import os
from datetime import datetime

import numpy as np
import pytest
from imagetree import make_jpeg

from indexer.sync.run import sync
from search.errors import QueryError
from search.query.searcher import SearchRequest, folder_prefix, parse_weighted


@pytest.fixture
def indexed(library, tmp_path):
    root = tmp_path / "photos"
    for i in range(40):
        path = make_jpeg(root / ("2019" if i < 15 else "2021") / f"p{i:02d}.jpg", i)
        stamp = datetime(2019 if i < 15 else 2021, 6, 1).timestamp()
        os.utime(path, (stamp, stamp))
    sync(library, [str(root)], progress=False)
    return library


def brute_force(lib, query: np.ndarray, k: int, allowed=None) -> list[int]:
    ids, vectors = lib.catalog.vectors(lib.serving_model)
    scores = vectors @ (query / np.linalg.norm(query))
    order = [int(ids[j]) for j in np.argsort(-scores, kind="stable")]
    if allowed is not None:
        order = [i for i in order if i in allowed]
    return order[:k]


def encoder_of(lib):
    return lib.searcher.encoder(lib.serving_model)


def assert_same_ranking(hits, expected_ids, lib, query):
    ids, vectors = lib.catalog.vectors(lib.serving_model)
    by_id = dict(zip(ids.tolist(), vectors @ (query / np.linalg.norm(query))))
    assert [h.id for h in hits] == expected_ids
    for h in hits:
        assert h.score == pytest.approx(float(by_id[h.id]), abs=1e-5)


def test_text_query_matches_brute_force(indexed):
    hits = indexed.searcher.search(SearchRequest(text="a red square", k=10)).hits
    query = encoder_of(indexed).encode_texts(["a red square"])[0]
    assert_same_ranking(hits, brute_force(indexed, query, 10), indexed, query)


def test_image_query_matches_brute_force(indexed, tmp_path):
    probe = make_jpeg(tmp_path / "probe.jpg", 3, size=(300, 200))
    hits = indexed.searcher.search(SearchRequest(image=str(probe), k=7)).hits
    enc = encoder_of(indexed)
    from search.imageio import load_image

    query = enc.encode_images([load_image(probe, min_side=enc.image_size).image])[0]
    assert_same_ranking(hits, brute_force(indexed, query, 7), indexed, query)


def test_weighted_terms_match_brute_force(indexed):
    req = SearchRequest(text="a dog", add=("2:a red sofa",), sub=("0.5:blurry",), k=8)
    hits = indexed.searcher.search(req).hits
    t = encoder_of(indexed).encode_texts(["a dog", "a red sofa", "blurry"])
    query = t[0] + 2 * t[1] - 0.5 * t[2]
    assert_same_ranking(hits, brute_force(indexed, query, 8), indexed, query)


def test_like_an_indexed_image_excludes_itself(indexed):
    target = brute_force(indexed, encoder_of(indexed).encode_texts(["x"])[0], 1)[0]
    model = indexed.serving_model
    query = indexed.catalog.vector_of(target, model)
    hits = indexed.searcher.search(SearchRequest(like=target, k=5)).hits
    expected = [i for i in brute_force(indexed, query, 6) if i != target][:5]
    assert_same_ranking(hits, expected, indexed, query)


def test_offset_pages_through_the_same_ranking(indexed):
    full = indexed.searcher.search(SearchRequest(text="tree", k=20)).hits
    page = indexed.searcher.search(SearchRequest(text="tree", k=5, offset=10)).hits
    assert [h.id for h in page] == [h.id for h in full[10:15]]


def test_a_folder_prefix_means_that_folder_relative_or_absolute(tmp_path, monkeypatch):
    """One rule for `search --path-prefix` and the web UI's path_prefix."""
    (tmp_path / "photos" / "2019").mkdir(parents=True)
    folder = str(tmp_path / "photos" / "2019") + os.sep
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert folder_prefix(str(tmp_path / "photos" / "2019")) == folder
    assert folder_prefix(folder) == folder
    assert folder_prefix("photos/2019") == folder  # from the working directory
    assert folder_prefix("photos/../photos/2019/") == folder
    assert folder_prefix("~/photos/2019") == folder
    # Not a folder: a prefix of the catalog's paths as typed ('2019' is not '2019-old').
    assert folder_prefix(str(tmp_path / "photos" / "20")) == str(tmp_path / "photos" / "20")
    assert folder_prefix("photos/20") == "photos/20"
    assert folder_prefix("") == ""


def test_filters_by_folder_and_date(indexed, tmp_path):
    query = encoder_of(indexed).encode_texts(["sky"])[0]
    prefix = str(tmp_path / "photos" / "2019") + "/"
    in_2019 = set(indexed.catalog.filter_ids(path_prefix=prefix).tolist())
    assert len(in_2019) == 15
    hits = indexed.searcher.search(SearchRequest(text="sky", k=10, path_prefix=prefix)).hits
    assert [h.id for h in hits] == brute_force(indexed, query, 10, in_2019)

    after = indexed.searcher.search(SearchRequest(text="sky", k=50, after=datetime(2020, 1, 1)))
    assert len(after.hits) == 25 and all(h.date.year == 2021 for h in after.hits)
    before = indexed.searcher.search(SearchRequest(text="sky", k=50, before=datetime(2020, 1, 1)))
    assert len(before.hits) == 15 and all(h.date.year == 2019 for h in before.hits)


def test_sort_by_date_orders_the_best_matches_newest_first(indexed):
    """With relevant=False, the best offset+k matches by date (the UI's "all matches")."""
    by_score = indexed.searcher.search(SearchRequest(text="sky", k=20)).hits
    req = SearchRequest(text="sky", k=20, sort="date", relevant=False)
    by_date = indexed.searcher.search(req).hits
    assert {h.id for h in by_date} == {h.id for h in by_score}
    dates = [h.date for h in by_date]
    assert dates == sorted(dates, reverse=True)


def test_sort_by_date_sorts_the_relevant_set_not_the_top_k(indexed):
    everything = indexed.searcher.search(SearchRequest(text="sky", k=40, mode="semantic"))
    relevant = {h.id for h in everything.hits if h.relevant}
    assert 0 < len(relevant) < 40
    by_date = indexed.searcher.search(SearchRequest(text="sky", k=40, sort="date"))
    assert {h.id for h in by_date.hits} == relevant
    assert by_date.relevant_count == len(relevant)
    dates = [h.date for h in by_date.hits]
    assert dates == sorted(dates, reverse=True)


def test_results_never_point_at_a_deleted_image(indexed):
    hits = indexed.searcher.search(SearchRequest(text="sky", k=3)).hits
    os.unlink(hits[0].path)
    sync(indexed, [], progress=False)
    again = indexed.searcher.search(SearchRequest(text="sky", k=3)).hits
    assert hits[0].id not in {h.id for h in again}
    for h in again:
        assert indexed.catalog.image(h.id).path == h.path and os.path.exists(h.path)


@pytest.mark.parametrize(
    "req, message",
    [
        (SearchRequest(), "empty query"),
        (SearchRequest(text="a", sub=("a",)), "cancel"),
        (SearchRequest(like=123456), "--like 123456"),
        (SearchRequest(text="a", k=0), "k must be"),
    ],
)
def test_bad_queries_raise_clear_errors(indexed, req, message):
    with pytest.raises(QueryError, match=message):
        indexed.searcher.search(req)


def test_nothing_indexed_is_a_clear_error(library):
    with pytest.raises(QueryError, match="nothing is indexed"):
        library.searcher.search(SearchRequest(text="cat"))


def test_parse_weighted():
    assert parse_weighted("2:cat") == (2.0, "cat")
    assert parse_weighted("0.5: red sofa") == (0.5, "red sofa")
    assert parse_weighted("cat") == (1.0, "cat")
    assert parse_weighted("note:this") == (1.0, "note:this")


def test_captions_typed_in_move_where_a_query_s_relevance_ends(indexed):
    """Captions the library knows are read by the cutoff: captioning more of a query's best
    images with its words widens its relevant set at once (the reference is rebuilt when
    the captions change, with no index run), and leaves a query that is not text alone
    (an --add term) to the scores."""
    lib = indexed
    query = SearchRequest(text="a zebra crossing", k=40, relevant=False, mode="semantic")
    mixed = SearchRequest(
        text="a zebra crossing", add=("sky",), k=40, relevant=False, mode="semantic"
    )
    hits = lib.searcher.search(query).hits
    before = sum(h.relevant for h in hits)
    mixed_before = [h.relevant for h in lib.searcher.search(mixed).hits]
    n = min(before + 12, 36)
    for h in hits[:n]:
        lib.catalog.add_caption(h.id, "a zebra crossing in town")
    for h in hits[n:]:
        lib.catalog.add_caption(h.id, "a quiet garden")
    after = lib.searcher.search(query).hits
    assert [h.id for h in after] == [h.id for h in hits]  # the ranking is the scores'
    assert sum(h.relevant for h in after) > before
    assert all(h.relevant for h in after[: sum(h.relevant for h in after)])
    assert [h.relevant for h in lib.searcher.search(mixed).hits] == mixed_before
