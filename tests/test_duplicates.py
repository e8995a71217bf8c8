"""Duplicates: exact copies, edits of one photo and bursts told apart from look-alikes;
kept right when files move, change or go; folded into one search result; listed by the
command, the API and the page; made for catalogs older than signatures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from dupfiles import make_dup_folder, picture, save_jpeg
from PIL import Image, ImageEnhance
from test_cli import run
from tinylib import catalog_env

from indexer.sync.run import sync
from search.duplicates.grouping import find_groups
from search.duplicates.groups import duplicate_groups
from search.duplicates.signature import SIZE, signature
from search.query.searcher import SearchRequest
from webui import create_app

# Catalog tests: each runs on SQLite and on PostgreSQL (tests/conftest.py).
BOTH_CATALOGS = True


def named_groups(lib) -> set[tuple[str, frozenset[str]]]:
    groups = lib.catalog.duplicates.groups()
    metas = lib.catalog.images(i for g in groups for i in g.ids)
    return {(g.kind, frozenset(Path(metas[i].path).name for i in g.ids)) for g in groups}


def expected(folder) -> set[tuple[str, frozenset[str]]]:
    return {
        (kind, frozenset(names))
        for kind in ("exact", "near", "burst")
        for names in getattr(folder, kind)
    }


@pytest.fixture
def dups(library, tmp_path):
    folder = make_dup_folder(tmp_path / "photos")
    report = sync(library, [str(folder.root)], progress=False)
    assert report.duplicate_groups == 3
    return library, folder


def test_each_kind_is_found_and_look_alikes_stay_apart(dups):
    lib, folder = dups
    assert named_groups(lib) == expected(folder)
    grouped = {n for _, names in named_groups(lib) for n in names}
    assert not grouped & folder.alone


def test_signature_is_small_and_made_at_index_time(dups):
    lib, _ = dups
    data = lib.catalog.duplicates.signatures(SIZE)
    assert len(data.ids) == lib.catalog.image_count() and data.signatures.shape[1] == 384
    assert lib.catalog.duplicates.unsigned() == []


def test_groups_follow_moves_changes_and_removals(dups):
    lib, folder = dups
    root = folder.root
    ids_before = {g.kind: g.ids for g in lib.catalog.duplicates.groups()}
    # A move keeps the image's id, so the groups stay as they were, without re-reading.
    (root / "moved").mkdir()
    shutil.move(root / "copies" / "trip.png", root / "moved" / "trip.png")
    sync(lib, [str(root)], progress=False)
    assert {g.kind: g.ids for g in lib.catalog.duplicates.groups()} == ids_before
    # A changed file leaves its group: an edit overwritten by another picture.
    save_jpeg(picture(77), root / "edits" / "party_small.jpg", None)
    # A removed file leaves its group too.
    (root / "burst_2.jpg").unlink()
    sync(lib, [str(root)], progress=False)
    want = expected(folder)
    want = {(k, n - {"party_small.jpg", "burst_2.jpg"}) for k, n in want}
    assert named_groups(lib) == want
    # Nothing changed: the stored groups are read back, not found again.
    state = lib.catalog.duplicates.stored_state()
    assert lib.catalog.duplicates.state() == state
    assert duplicate_groups(lib.catalog, 100.0) == lib.catalog.duplicates.groups()


def test_search_collapse_shows_one_result_per_photo(dups):
    lib, _ = dups
    total = lib.catalog.image_count()
    every = lib.searcher.search(SearchRequest(text="photo", k=50, mode="semantic"))
    assert len(every.hits) == total and all(h.duplicates == () for h in every.hits)
    folded = lib.searcher.search(SearchRequest(text="photo", k=50, mode="semantic", collapse=True))
    # trip (3 files) and party (4 files) become one result each; bursts stay apart.
    assert len(folded.hits) == total - 2 - 3
    names = {h.id: Path(h.path).name for h in every.hits}
    for hit in folded.hits:
        name = Path(hit.path).name
        shown = {names[i] for i in hit.duplicates}
        if name.startswith("trip"):
            assert shown | {name} == {"trip.jpg", "trip.png", "trip.webp"}
        elif name.startswith("party"):
            assert len(shown) == 3 and all(n.startswith("party") for n in shown)
        else:
            assert hit.duplicates == ()
    # The kept one of each group is its best-ranked file.
    order = [h.id for h in every.hits]
    for hit in folded.hits:
        assert all(order.index(hit.id) < order.index(d) for d in hit.duplicates)
    # The command line's one-query catalog reader folds the same way.
    args = ("search", "photo", "--mode", "semantic", "-k", "50", "--collapse", "--json")
    doc = json.loads(run(*args, home=lib.settings.home, env=catalog_env(lib.settings)).stdout)
    assert [(r["id"], r["duplicates"]) for r in doc["results"]] == [
        (h.id, list(h.duplicates)) for h in folded.hits
    ]


def test_duplicates_command_api_and_page(dups):
    lib, folder = dups
    env = catalog_env(lib.settings)
    doc = json.loads(run("duplicates", "--json", home=lib.settings.home, env=env).stdout)
    got = {(g["kind"], frozenset(Path(p).name for p in g["paths"])) for g in doc["groups"]}
    assert got == expected(folder)
    assert all(len(g["ids"]) == len(g["paths"]) for g in doc["groups"])

    client = create_app(library=lib).test_client()
    api = client.get("/api/duplicates").get_json()
    assert [(g["kind"], g["ids"]) for g in api["groups"]] == [
        (g["kind"], g["ids"]) for g in doc["groups"]
    ]
    page = client.get("/duplicates")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert html.count('class="grid dup-group"') == 3 and "party_crop.jpg" in html
    # Search pages fold copies by default; the JSON API only when asked.
    assert "+2 copies" in client.get("/?q=photo&mode=semantic&k=48").get_data(as_text=True)
    plain = client.get("/api/search?q=photo&mode=semantic&k=50").get_json()["results"]
    folded = client.get("/api/search?q=photo&mode=semantic&k=50&collapse=1").get_json()
    assert len(plain) == len(folded["results"]) + 5
    assert any(r["duplicates"] for r in folded["results"])


def test_catalog_without_signatures_gets_them_when_duplicates_are_asked_for(dups):
    """A library indexed before signatures existed (or decoded on the device)."""
    lib, folder = dups
    with lib.catalog.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE images SET signature = NULL")
        conn.exec_driver_sql("DELETE FROM duplicate_members")
        conn.exec_driver_sql("DELETE FROM settings WHERE key = 'duplicates.state'")
    assert len(lib.catalog.duplicates.unsigned()) == lib.catalog.image_count()
    duplicate_groups(lib.catalog, 100.0)
    assert lib.catalog.duplicates.unsigned() == []
    assert named_groups(lib) == expected(folder)


def test_exact_needs_the_same_pixels_not_just_alike_signatures(tmp_path):
    """Two recompressions of one photo have near-identical signatures: only a full decode
    tells them apart from copies, and it is asked for only for such pairs."""
    image = picture(5)
    sigs = np.stack([np.frombuffer(signature(image), np.uint8)] * 3)
    sizes = np.array([[480, 360]] * 3)
    asked = []

    def same_pixels(a: int, b: int) -> bool:
        asked.append((a, b))
        return {a, b} == {10, 11}

    groups = find_groups(np.array([10, 11, 12]), sigs, sizes, np.full(3, np.nan), same_pixels)
    kinds = {(g.kind, g.ids) for g in groups}
    assert kinds == {("exact", (10, 11)), ("near", (10, 11, 12))}
    assert sorted(asked) == [(10, 11), (10, 12), (11, 12)]


def test_bursts_need_close_times_and_alike_pictures():
    shots = [picture(3, shift=(6 * n, 3 * n)) for n in range(3)] + [picture(9)]
    sigs = np.stack([np.frombuffer(signature(s), np.uint8) for s in shots])
    sizes = np.array([[480, 360]] * 4)
    ids = np.arange(4)
    close = np.array([0.0, 2.0, 4.0, 5.0])  # the 4th: another scene, a second later
    groups = find_groups(ids, sigs, sizes, close, lambda a, b: False)
    assert [(g.kind, g.ids) for g in groups] == [("burst", (0, 1, 2))]
    apart = np.array([0.0, 3600.0, 7200.0, 5.0])  # the same scene, hours apart
    assert find_groups(ids, sigs, sizes, apart, lambda a, b: False) == []


def test_signature_reads_any_mode(tmp_path):
    for mode in ("RGB", "L", "RGBA", "P", "CMYK"):
        assert len(signature(Image.new(mode, (40, 30)))) == SIZE


def test_nothing_alike_gives_no_groups():
    sigs = np.stack([np.frombuffer(signature(picture(s)), np.uint8) for s in (60, 61)])
    sizes = np.array([[480, 360]] * 2)
    assert find_groups(np.arange(2), sigs, sizes, np.full(2, np.nan), lambda a, b: True) == []


def test_blank_copies_are_exact_and_compared_without_warnings():
    """Blank frames (all one grey) have no luma pattern and no colour to align: two of
    the same size are still asked about, and are exact copies when their pixels agree."""
    flat = [Image.new("RGB", (64, 48), (128, 128, 128))] * 2 + [picture(8)]
    sigs = np.stack([np.frombuffer(signature(f), np.uint8) for f in flat])
    sizes = np.array([[64, 48], [64, 48], [480, 360]])
    with np.errstate(all="raise"):
        groups = find_groups(np.arange(3), sigs, sizes, np.full(3, np.nan), lambda a, b: True)
    assert [(g.kind, g.ids) for g in groups] == [("exact", (0, 1))]
    assert find_groups(np.arange(3), sigs, sizes, np.full(3, np.nan), lambda a, b: False) == []


def test_a_faint_and_a_strong_picture_laid_out_alike_are_not_one_photo():
    """Two of the demo's own pictures (a green square on purple, a white disc on striped
    purple) correlate at 0.96 once aligned: only their luma spreads (26 against 158) tell
    them apart. A contrast retouch of either stays its photo."""
    samples = Path(__file__).parents[1] / "data" / "samples"
    square, disc = (
        Image.open(samples / name).convert("RGB") for name in ("00003.jpg", "00008.jpg")
    )
    retouched = ImageEnhance.Contrast(disc).enhance(1.15)
    images = [square, disc, retouched]
    sigs = np.stack([np.frombuffer(signature(im), np.uint8) for im in images])
    sizes = np.array([im.size for im in images])
    groups = find_groups(np.arange(3), sigs, sizes, np.full(3, np.nan), lambda a, b: False)
    assert [(g.kind, g.ids) for g in groups] == [("near", (1, 2))]
