"""Hybrid search: names, folders, typed captions and embedded keywords, fused with the
vector ranking; the per-query relevance cutoff; hostile query text."""

from __future__ import annotations

import json

import numpy as np
import pytest
from imagetree import make_jpeg
from keywords_files import write_photo
from tinylib import catalog_env

from indexer.sync.run import sync
from search.errors import QueryError
from search.query import relevance
from search.query.searcher import SearchRequest
from search.tags import calibration

# Catalog tests: each runs on SQLite and on PostgreSQL (tests/conftest.py).
BOTH_CATALOGS = True

HOSTILE = [
    '"',
    '"unbalanced',
    "*",
    "-",
    "lisbon -",
    "NEAR(lisbon wedding",
    "name: lisbon",
    "{name folder}: x",
    "AND OR NOT",
    "^lisbon",
    "lisbon" * 2000,
    "x " * 5000,
    "🙂🙂🙂",
    "🙂 lisbon",
    "ליסבון חתונה",
    "لشبونة",
    "\x00\x01",
    "a'b\"c",
    "%_\\",
]


@pytest.fixture
def library_with_words(library, tmp_path):
    root = tmp_path / "photos"
    for i in range(12):
        make_jpeg(root / "2019 Lisbon" / f"p{i:02d}.jpg", i)
    for i in range(12, 30):
        make_jpeg(root / "misc" / f"p{i:02d}.jpg", i)
    for i in range(30, 34):
        write_photo(root / "misc" / f"k{i}.jpg", "teal", iptc=["Wedding", "Málaga"])
    make_jpeg(root / "misc" / "Grandma_garden.jpg", 40)
    sync(library, [str(root)], progress=False)
    return library, root


def search(lib, text, **kw):
    return lib.searcher.search(SearchRequest(text=text, **kw))


def paths(result):
    return [h.path for h in result.hits]


def test_a_folder_name_finds_its_photos_first(library_with_words):
    lib, root = library_with_words
    result = search(lib, "lisbon", k=12)
    assert all("/2019 Lisbon/" in p for p in paths(result))
    assert all(h.matched == ("folder",) and h.relevant for h in result.hits)
    # Semantic-only search cannot read folder names: random pixels, random ranking.
    semantic = search(lib, "lisbon", k=12, mode="semantic")
    assert sum("/2019 Lisbon/" in p for p in paths(semantic)) < 12
    assert all(h.matched == () for h in semantic.hits)


def test_a_broad_word_ranks_its_matches_by_cosine(library_with_words, monkeypatch):
    """Past BROAD_MATCHES matches, a word's images are ordered by the query's cosine among
    them instead of bm25: the same images, first, in cosine order; text mode keeps bm25."""
    from search.query import searcher

    lib, root = library_with_words
    calls = []
    catalog = lib.searcher.catalog
    for name in ("lexical_search", "lexical_ids"):
        method = getattr(catalog, name)
        monkeypatch.setattr(
            catalog, name, lambda *a, _m=method, _n=name: calls.append(_n) or _m(*a)
        )
    narrow_relevant = {h.id for h in search(lib, "lisbon", k=100, relevant=True).hits}
    lisbon = str(root / "2019 Lisbon") + "/"
    monkeypatch.setattr(searcher, "BROAD_MATCHES", 5)
    # Every match is ranked, not the first LEXICAL_LIMIT in rowid order (the oldest).
    monkeypatch.setattr(searcher, "LEXICAL_LIMIT", 3)
    broad = search(lib, "lisbon", k=5)
    assert calls == ["lexical_search", "lexical_ids"]
    # Of the 12 folder matches, the five the query's cosine ranks first, in that order.
    lisbon_by_cosine = [
        h.id for h in search(lib, "lisbon", k=12, mode="semantic", path_prefix=lisbon).hits
    ]
    assert len(lisbon_by_cosine) == 12
    assert [h.id for h in broad.hits] == lisbon_by_cosine[:5]
    assert all(h.matched == ("folder",) and h.relevant for h in broad.hits)
    # The whole relevant set is the same set either way.
    relevant = {h.id for h in search(lib, "lisbon", k=100, relevant=True).hits}
    assert relevant == narrow_relevant and relevant >= set(lisbon_by_cosine)
    # A filter applies before the matches are ranked: none of them is in misc/.
    misc = search(lib, "lisbon", k=5, path_prefix=str(root / "misc") + "/")
    assert misc.hits and all("/misc/" in h.path and h.matched == () for h in misc.hits)
    search(lib, "lisbon", k=12, mode="text")
    assert calls[-1] == "lexical_search"


def test_embedded_keywords_names_and_accents(library_with_words):
    lib, _ = library_with_words
    wedding = search(lib, "weddings", k=4)  # stemmed: weddings ~ Wedding
    assert {p.rsplit("/", 1)[1] for p in paths(wedding)} == {f"k{i}.jpg" for i in range(30, 34)}
    assert all(h.matched == ("keywords",) for h in wedding.hits)
    assert {h.path for h in search(lib, "malaga", k=4, mode="text").hits} == {
        h.path for h in wedding.hits
    }
    garden = search(lib, "grandma", k=1).hits[0]
    assert garden.path.endswith("Grandma_garden.jpg") and garden.matched == ("name",)


def test_text_mode_returns_only_word_matches_and_loads_no_model(library_with_words):
    lib, _ = library_with_words
    result = search(lib, "lisbon", k=50, mode="text")
    assert len(result.hits) == 12 and all(h.relevant for h in result.hits)
    assert lib.searcher._encoders == {}  # the words alone answered
    assert search(lib, "nowhere", k=5, mode="text").hits == []
    with pytest.raises(QueryError, match="empty query"):
        search(lib, None, mode="text")


def test_all_words_must_match(library_with_words):
    lib, _ = library_with_words
    assert search(lib, "lisbon wedding", k=50, mode="text").hits == []
    assert len(search(lib, "wedding malaga", k=50, mode="text").hits) == 4


def test_a_typed_caption_is_found_at_once(library_with_words):
    lib, root = library_with_words
    target = search(lib, "p20", k=1, mode="text").hits[0]
    lib.catalog.add_caption(target.id, "Uncle Bob's birthday cake")
    hit = search(lib, "birthday cake", k=1).hits[0]
    assert hit.id == target.id and hit.matched == ("caption",)


def test_filters_and_weighted_terms_hold_in_every_mode(library_with_words):
    lib, root = library_with_words
    prefix = str(root / "misc") + "/"
    assert search(lib, "lisbon", k=50, mode="text", path_prefix=prefix).hits == []
    hybrid = search(lib, "lisbon", k=50, mode="hybrid", path_prefix=prefix).hits
    assert hybrid and all(h.path.startswith(prefix) and h.matched == () for h in hybrid)
    for mode in ("hybrid", "text"):
        hits = search(lib, "wedding", k=4, mode=mode, path_prefix=prefix).hits
        assert {h.path.rsplit("/", 1)[1] for h in hits} == {f"k{i}.jpg" for i in range(30, 34)}
    weighted = search(lib, "wedding", add=("2:malaga",), sub=("0.5:lisbon",), k=4).hits
    assert all(h.matched == ("keywords",) for h in weighted)
    assert search(lib, "wedding", add=("lisbon",), k=5, mode="text").hits == []


def test_hostile_query_text_never_errors(library_with_words):
    # One library for every text: building one per text cost ~0.5 s each, twice (catalogs).
    lib, _ = library_with_words
    failed = []
    for text in HOSTILE:
        for mode in ("hybrid", "text"):
            try:
                assert len(search(lib, text, k=5, mode=mode).hits) <= 5
            except Exception as exc:  # every hostile text is tried, and each failure named
                failed.append((text[:40], mode, repr(exc)[:200]))
    assert failed == []


def test_relevant_only_returns_the_set_above_the_cutoff(library_with_words):
    lib, _ = library_with_words
    everything = search(lib, "a red square", k=100, mode="semantic").hits
    cut = min((h.score for h in everything if h.relevant), default=None)
    assert cut is not None
    assert all((h.score >= cut) == h.relevant for h in everything)
    relevant = search(lib, "a red square", k=100, mode="semantic", relevant=True)
    assert [h.id for h in relevant.hits] == [h.id for h in everything if h.relevant]
    assert relevant.relevant_count == len(relevant.hits)
    paged = search(lib, "a red square", k=2, offset=1, mode="semantic", relevant=True)
    assert [h.id for h in paged.hits] == [h.id for h in relevant.hits[1:3]]
    assert paged.relevant_count == relevant.relevant_count


def test_sort_by_date_sorts_the_whole_relevant_set(library_with_words):
    lib, _ = library_with_words
    relevant = search(lib, "lisbon", k=100, relevant=True)
    by_date = search(lib, "lisbon", k=100, sort="date")
    assert {h.id for h in by_date.hits} == {h.id for h in relevant.hits}
    dates = [h.date for h in by_date.hits]
    assert dates == sorted(dates, reverse=True)


def test_the_cutoff_adapts_to_each_query():
    rng = np.random.default_rng(0)
    for background, lift, share in [(0.1, 0.15, 0.02), (0.3, 0.1, 0.2), (-0.2, 0.4, 0.5)]:
        noise = rng.normal(background, 0.02, 2000)
        relevant = rng.normal(background + lift, 0.02, int(2000 * share))
        cut = relevance.cutoff(np.concatenate([noise, relevant]))
        kept_noise = np.mean(noise >= cut)
        kept_relevant = np.mean(relevant >= cut)
        assert kept_relevant > 0.95 and kept_noise < 0.05, (background, lift, share)


def test_the_cutoff_of_degenerate_scores():
    assert relevance.cutoff(np.array([])) == 0.0
    assert relevance.cutoff(np.array([0.3])) == pytest.approx(0.3)
    assert relevance.cutoff(np.full(10, 0.2)) == pytest.approx(0.2)
    assert relevance.cutoff(np.array([0.9, 0.1, 0.1, 0.1])) == pytest.approx(0.9)
    # A NaN or infinite score (a broken vector) is left out, not an error.
    assert relevance.cutoff(np.array([0.9, np.nan, 0.1, np.inf, 0.1, 0.1])) == pytest.approx(0.9)


def test_captions_hold_a_query_s_words_only_close_together():
    """A caption holds a query when its words fall close together, in any order and
    inflection: "red background" is not what "a red star on a green background" shows."""
    captions = [
        "a red star on a green background",
        "a large red circle",
        "hills in fog at night",
        "green background",
        "",
    ]
    described = relevance.Described([calibration.terms(c) for c in captions])
    assert described.holding("red background").tolist() == [False] * 5
    assert described.holding("green background").tolist() == [True, False, False, True, False]
    assert described.holding("large circle").tolist() == [False, True, False, False, False]
    assert described.holding("foggy hills").tolist() == [False, False, True, False, False]
    assert described.holding("red").tolist() == [True, True, False, False, False]
    assert not described.holding("the of a").any()  # no content word: nothing said
    assert not described.holding("zebra").any()
    assert relevance.Described([("sea", "boat", "sky", "sea")]).holding("sky sea").all()


def test_a_long_caption_and_a_long_query_are_read_in_linear_time():
    """Hostile text: a typed caption of thousands of words repeating those of a long
    query is one pass, not the words' combinations."""
    import time

    words = [c + v + c for c in "bcdfgh" for v in "aeiou"]  # 30 words: bab, beb, ...
    caption = tuple(calibration.terms(" ".join(words * 200)))  # 6,000 words
    described = relevance.Described([caption, ("beb",)])
    t = time.perf_counter()
    held = described.holding(" ".join(reversed(words)))
    assert time.perf_counter() - t < 1.0
    assert held.tolist() == [True, False]  # all 30 within 30 words, in any order
    assert described.holding("bab fuf").tolist() == [False, False]  # 11 or more apart
    assert described.holding("bob bub").tolist() == [True, False]


def test_an_image_is_described_by_its_nearest_captions_or_by_what_was_typed_for_it():
    """Untyped images: the share of their nearest known captions holding the query's words
    (one caption says one thing of an image: "mountains", not "at sunset"); a caption typed
    for an image is its description alone."""
    known = ["mountains", "mountains at sunset", "sunset", "a boat at sea"]
    nearest = np.array([[0, 1, 2, 2], [3, 3, 3, 2], [0, 0, 0, 0]])
    described = relevance.Described.of([None, None, "hills at sunset by the sea"], known, nearest)
    assert described.holding("mountains at sunset").tolist() == [0.25, 0.0, 0.0]
    assert described.holding("mountains").tolist() == [0.5, 0.0, 0.0]
    assert described.holding("sunset").tolist() == [0.75, 0.25, 1.0]
    assert described.holding("boat").tolist() == [0.0, 0.75, 0.0]


def test_shares_of_captions_find_a_cut_that_one_caption_an_image_misses():
    """The best 80 of 400 images show "dogs on a sofa", but each is described by the dog
    or the sofa more often than by both: the one nearest caption says it of a quarter of
    them, the share of four nearest of all of them."""
    rng = np.random.default_rng(2)
    scores = np.sort(rng.uniform(0.0, 0.6, 400))[::-1]
    truth = np.arange(400) < 80
    known = ["a dog on a sofa", "a dog", "a sofa", "a cat"]
    rows = {"both first": [0, 1, 2, 1], "both later": [1, 2, 0, 2], "cat": [3, 3, 1, 2]}
    kind = ["both first" if i % 4 == 0 else "both later" if i < 80 else "cat" for i in range(400)]
    nearest = np.array([rows[k] for k in kind])

    def f1(cut: float) -> float:
        kept = scores >= cut
        return 2 * (kept & truth).sum() / (kept.sum() + truth.sum())

    shares = relevance.Reference(np.eye(400), relevance.Described.of([None] * 400, known, nearest))
    first = relevance.Reference(
        np.eye(400), relevance.Described.of([None] * 400, known, nearest[:, :1])
    )
    assert f1(shares.cut(scores, "dog sofa")) > 0.9
    assert f1(first.cut(scores, "dog sofa")) < f1(shares.cut(scores, "dog sofa")) - 0.2


def test_captions_move_the_cutoff_where_the_scores_draw_no_line():
    """Scores with no gap between what matches and what does not: the two Gaussians cut
    somewhere; captions saying which images hold the query's words move the cut to them."""
    rng = np.random.default_rng(1)
    scores = np.sort(rng.uniform(0.0, 0.6, 400))[::-1]
    truth = np.zeros(400, dtype=bool)
    truth[:80] = True  # the best 80 hold it; its captions say so for 60 of them, and 3 others
    captions = [("dog", "sofa") if i < 60 or i in (200, 300, 390) else ("cat",) for i in range(400)]
    reference = relevance.Reference(np.eye(400, dtype=np.float32), relevance.Described(captions))

    def f1(cut: float) -> float:
        kept = scores >= cut
        return 2 * (kept & truth).sum() / (kept.sum() + truth.sum())

    alone = relevance.cutoff(scores)
    with_captions = reference.cut(scores, "a dog on a sofa")
    assert f1(with_captions) > f1(alone) + 0.1
    assert f1(with_captions) > 0.75  # the captions alone, cut at their 60th: 0.86
    # Through the query's vector, the same; without a text, or with words no caption
    # holds, the scores alone.
    assert reference.cutoff(scores.astype(np.float32), "dog sofa") == pytest.approx(with_captions)
    assert reference.cut(scores, None) == alone
    assert reference.cut(scores, "zebra") == alone
    assert relevance.Reference(np.eye(3), None).cut(np.array([0.9, 0.1, 0.1]), "dog") == 0.9


def test_captions_that_name_part_of_what_is_relevant_cut_where_their_rate_drops():
    """The best 150 of 1,000 images are deserts at sunset, but their captions say "dusk"
    or "evening" more often than "sunset": 3 in 20 of the nearest captions hold the query's
    words for the best 75, 2 in 20 for the next 75, none below. Cut at the labels' best F1
    the set ends where their count runs out (the 75th); the drop in their rate says 150,
    and it holds with a tenth of the images typed, whose whole "yes" or "no" is noise."""
    rng = np.random.default_rng(3)
    scores = np.sort(rng.uniform(0.0, 0.6, 1000))[::-1]
    truth = np.arange(1000) < 150
    captions = [("desert", "sunset"), ("desert", "dusk"), ("red", "car")]
    per_image = [[0] * 3 + [1] * 17] * 75 + [[0] * 2 + [1] * 18] * 75 + [[2] * 20] * 850
    described = relevance.Described(captions, np.array(per_image))

    def f1(cut: float) -> float:
        kept = scores >= cut
        return 2 * (kept & truth).sum() / (kept.sum() + truth.sum())

    weak = described.holding("desert at sunset")
    assert f1(calibration.best_cut(scores, weak)) < 0.7
    assert f1(relevance.Reference(np.eye(1000), described).cut(scores, "desert at sunset")) > 0.98

    typed = np.arange(1000) % 10 == 0
    # A person's caption says "sunset" for a fifth of the typed deserts.
    said = [
        ("desert", "sunset") if i < 150 and rng.random() < 0.2 else ("dusk",)
        for i in np.flatnonzero(typed)
    ]
    rows = np.array(per_image)
    rows[typed] = np.arange(3, 3 + len(said))[:, None]
    with_typed = relevance.Described(captions + said, rows, typed)
    cut = relevance.Reference(np.eye(1000), with_typed).cut(scores, "desert at sunset")
    assert f1(cut) > 0.98


def test_labels_that_fade_down_the_ranking_keep_their_best_f1_cut():
    """A query the model half knows: its labels' rate falls slowly and noisily down the
    ranking, with no drop to trust, and the cut is the labels' best F1 (pulled toward the
    scores' own as PRIOR images would)."""
    rng = np.random.default_rng(4)
    scores = np.sort(rng.uniform(0.0, 0.6, 1000))[::-1]
    held = rng.binomial(10, 0.2 * (1.0 - np.arange(1000) / 1000))  # of 10 nearest captions
    captions = [calibration.terms("red stripes"), calibration.terms("blue dots")]
    rows = np.array([[0] * h + [1] * (10 - h) for h in held])
    weak = held / 10.0
    expected = (
        weak.sum() * calibration.best_cut(scores, weak) + relevance.PRIOR * relevance.cutoff(scores)
    ) / (weak.sum() + relevance.PRIOR)
    reference = relevance.Reference(np.eye(1000), relevance.Described(captions, rows))
    assert reference.cut(scores, "red stripes") == pytest.approx(expected)


def test_a_trained_model_s_own_pairs_say_whether_it_knows_the_query(tmp_path):
    """Nothing typed: the model's captions of the library agree with its own ranking, so
    they cut at the top fifth. The pairs it was trained on, ranked at chance by the query,
    say it is guessing (the cut then keeps most of the library); ranked well, they leave
    the cut where the captions put it."""
    rng = np.random.default_rng(4)
    query = np.eye(8, dtype=np.float32)[0]
    library = rng.normal(size=(400, 8)).astype(np.float32)
    library /= np.linalg.norm(library, axis=1, keepdims=True)
    top = library @ query >= np.quantile(library @ query, 0.8)
    said = [("red", "circle") if t else ("blue", "square") for t in top]
    pairs = rng.normal(size=(40, 8)).astype(np.float32)
    texts = ["a red circle" if i % 2 else "a blue square" for i in range(40)]

    def checked(knows: bool) -> relevance.Checked:
        vectors = pairs.copy()
        # The query's score on each pair: its first component. Knowing, the red circles
        # score highest; guessing, every other pair is one, in the query's own order.
        vectors[:, 0] = np.where(np.arange(40) % 2, 5.0, -5.0) if knows else np.arange(40)
        captions = relevance.Described([calibration.terms(t) for t in texts])
        return relevance.Checked(vectors, captions, np.arange(40))

    def kept(pairs_of_model) -> int:
        described = relevance.Described(said, checked=pairs_of_model)
        cut = relevance.Reference(library, described).cutoff(query, "red circle")
        return int((library @ query >= cut).sum())

    alone = kept(None)
    assert 60 <= alone <= 100
    assert kept(checked(knows=True)) == alone
    assert kept(checked(knows=False)) > 300
    assert relevance.Checked.load(tmp_path / "none.npz") is None
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    assert relevance.Checked.load(tmp_path / "broken.npz") is None
    for name, images in (("short.npz", 41), ("ok.npz", 40)):
        np.savez(tmp_path / name, vectors=pairs, captions=texts, image_of=np.arange(images))
    assert relevance.Checked.load(tmp_path / "short.npz") is None  # a caption with no image
    assert relevance.Checked.load(tmp_path / "ok.npz").holding("red circle").sum() == 20


def test_typed_captions_say_whether_to_trust_the_model_s_captions_of_the_rest():
    """300 images; 40 typed. Where the query's scores rank the typed ones at chance, the
    untyped images' caption shares are replaced by the share the typed ones hold (the cut
    then keeps what a guess should); where they rank them well, the shares stand; with
    too few typed either way, nothing is judged."""
    rng = np.random.default_rng(3)
    typed = np.zeros(300, dtype=bool)
    typed[:40] = True
    said = np.zeros(300)
    said[:40:4] = 1.0  # 10 of the 40 typed hold the query's words
    said[40:] = rng.uniform(0.0, 1.0, 260)  # the model's caption shares of the rest
    guessing = rng.permutation(300).astype(float)
    guessing[:40] = np.arange(40)  # the typed holders at every 4th rank: an AUC of 0.45
    knowing = guessing.copy()
    knowing[:40] = np.where(said[:40] == 1.0, 1000.0 + np.arange(40), np.arange(40) - 1000.0)

    at_chance = calibration.trusted(said, guessing, typed)
    assert at_chance[:40].tolist() == said[:40].tolist()  # what was typed is the truth
    assert np.allclose(at_chance[40:], 0.25)  # the share the typed ones hold
    assert calibration.trusted(said, knowing, typed).tolist() == said.tolist()
    halfway = guessing.copy()
    halfway[:40] = np.where(said[:40] == 1.0, np.arange(40) + 11.5, np.arange(40))
    trust = (calibration.trusted(said, halfway, typed)[40:] - 0.25) / (said[40:] - 0.25)
    assert trust.min() > 0.1 and trust.max() < 0.9  # in between: partly trusted
    assert np.allclose(trust, trust[0])
    few = typed & (np.arange(300) < 12)  # 3 typed hold it: too few to judge
    assert calibration.trusted(said, guessing, few).tolist() == said.tolist()


def test_the_json_api_says_relevant_matched_and_why(library_with_words):
    from webui import create_app

    lib, _ = library_with_words
    client = create_app(library=lib).test_client()
    body = client.get("/api/search?q=lisbon&k=3&relevant=1&mode=text").get_json()
    assert body["relevant_count"] == 12 and len(body["results"]) == 3
    for hit in body["results"]:
        assert hit["relevant"] is True and hit["matched"] == ["folder"]
        assert "<mark>Lisbon</mark>" in hit["highlights"]["folder"]
    page = client.get("/?q=lisbon&relevant=1&mode=text").get_data(as_text=True)
    assert "12 relevant" in page and "<mark>Lisbon</mark>" in page
    bad = client.get("/api/search?q=lisbon&mode=fuzzy")
    assert bad.status_code == 400 and "mode must be one of" in bad.get_json()["error"]


@pytest.mark.parametrize("mode", ["hybrid", "semantic", "text"])
def test_hostile_query_text_through_the_api_is_never_a_500(library_with_words, mode):
    from webui import create_app

    lib, _ = library_with_words
    client = create_app(library=lib).test_client()
    for text in HOSTILE:
        r = client.get("/api/search", query_string={"q": text[:1000], "mode": mode})
        assert r.status_code == 200, (text[:40], r.get_data(as_text=True)[:200])
        page = client.get("/", query_string={"q": text[:1000], "mode": mode})
        assert page.status_code == 200


# The command line's own handling; on PostgreSQL the same text goes through the API test
# above and tests/test_lexical_pg.py (twelve command runs cost 40 s a catalog).
@pytest.mark.sqlite_only
def test_hostile_query_text_on_the_command_line(library_with_words):
    from test_cli import run

    lib, root = library_with_words
    home, env = lib.settings.home, catalog_env(lib.settings)
    for text in ['"unbalanced', "NEAR(lisbon", "lisbon -", "🙂 ליסבון", "*", "x " * 5000]:
        for mode in ("hybrid", "text"):
            out = run("search", text, "--mode", mode, "-k", "3", "--json", home=home, env=env)
            assert len(json.loads(out.stdout)["results"]) <= 3
    args = ("search", "lisbon", "--mode", "text", "--relevant", "-k", "20", "--json")
    out = json.loads(run(*args, home=home, env=env).stdout)
    assert out["relevant_count"] == 12
    assert {h["matched"][0] for h in out["results"]} == {"folder"}
    assert all(h["relevant"] for h in out["results"])


def test_a_renamed_folder_is_found_by_its_new_name_without_re_embedding(library_with_words):
    lib, root = library_with_words
    (root / "2019 Lisbon").rename(root / "2019 Porto")
    report = sync(lib, [], progress=False)
    assert report.embedded == 0 and report.moved == 12
    assert search(lib, "lisbon", k=50, mode="text").hits == []
    porto = search(lib, "porto", k=50, mode="text").hits
    assert len(porto) == 12 and all(h.matched == ("folder",) for h in porto)


def test_changed_keywords_are_read_again_without_re_embedding(library_with_words):
    lib, root = library_with_words
    path = root / "misc" / "k30.jpg"
    write_photo(path, "teal", iptc=["Graduation"])  # same pixels, other keywords
    image_id = next(
        h.id for h in search(lib, "malaga", k=5, mode="text").hits if h.path == str(path)
    )
    vector = lib.catalog.vector_of(image_id, lib.serving_model)
    report = sync(lib, [], progress=False)
    assert (report.embedded, report.kept, report.updated) == (0, 1, 1)
    found = search(lib, "graduation", k=5, mode="text").hits
    assert [h.path for h in found] == [str(path)] and found[0].matched == ("keywords",)
    assert lib.catalog.vector_of(image_id, lib.serving_model).tobytes() == vector.tobytes()
    assert str(path) not in {h.path for h in search(lib, "wedding", k=10, mode="text").hits}
    # New pixels are embedded again, as before.
    write_photo(path, "orange", iptc=["Graduation"])
    report = sync(lib, [], progress=False)
    assert (report.embedded, report.kept, report.updated) == (1, 0, 1)


def test_images_catalogued_before_keywords_were_kept_get_them_on_the_next_run(
    library_with_words,
):
    lib, _ = library_with_words
    with lib.catalog.engine.begin() as conn:  # as a catalog migrated from revision 0003 is
        conn.exec_driver_sql("UPDATE images SET keywords = NULL")
    assert search(lib, "wedding", k=5, mode="text").hits == []
    report = sync(lib, [], progress=False)
    assert report.keywords_read == report.seen == 35 and report.embedded == 0
    assert len(search(lib, "wedding", k=5, mode="text").hits) == 4
    assert sync(lib, [], progress=False).keywords_read == 0
