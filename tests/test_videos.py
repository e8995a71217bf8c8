"""Videos: frames sampled at cuts and every N seconds, searched as one result at the best
frame's time, bounded decoding (caps, truncation, time-out), and frames kept consistent
with the catalog and the index when files move, change or go."""

from __future__ import annotations

import io
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from videofiles import cut_short, make_video, scene_picture

from indexer.sync.run import sync
from search import codecs, videos
from search.index import ann as ann_module
from search.index.ann import IndexPolicy, build_index
from search.library import Library
from search.query.searcher import SearchRequest
from search.tags.tagger import one_per_image
from search.videos import read_video
from webui import create_app

# Three scenes of four seconds: the second (4-8 s) is what the tests look for.
SCENES = [(1, 4.0), (2, 4.0), (3, 4.0)]
SECOND = (4.0, 8.0)


def query_image(tmp_path: Path, seed: int) -> Path:
    path = tmp_path / f"query-{seed}.png"
    scene_picture(seed, step=3).save(path)
    return path


@pytest.fixture
def clips(library, tmp_path):
    root = tmp_path / "clips"
    make_video(root / "holiday.webm", SCENES)
    for seed in (11, 12, 13):  # photos beside it
        scene_picture(seed).save(root / f"photo-{seed}.jpg", quality=90)
    report = sync(library, [str(root)], progress=False)
    assert report.failed == 0 and library.catalog.image_count() == 4
    return library, root


def video_hits(lib, query: Path, k: int = 10):
    result = lib.searcher.search(SearchRequest(image=str(query), k=k, mode="semantic"))
    return result, [h for h in result.hits if h.kind == "video"]


def test_the_second_scene_is_found_at_its_time_as_one_result(clips, tmp_path):
    lib, root = clips
    result, found = video_hits(lib, query_image(tmp_path, 2))
    assert len(found) == 1  # one video, one result, however many frames matched
    hit = found[0]
    assert result.hits[0] is hit and Path(hit.path).name == "holiday.webm"
    assert SECOND[0] - 1 <= hit.t <= SECOND[1] + 1
    doc = hit.to_json()
    assert doc["kind"] == "video" and doc["t"] == pytest.approx(hit.t)
    assert {h.to_json()["kind"] for h in result.hits} == {"video", "image"}
    assert all(h.t is None for h in result.hits if h.kind == "image")
    # The first scene's picture finds the same video at the start.
    _, first = video_hits(lib, query_image(tmp_path, 1))
    assert first[0].t < SECOND[0]


def test_frames_are_kept_at_cuts_and_at_least_every_n_seconds(tmp_path):
    path = make_video(tmp_path / "v.mp4", [(1, 3.0), (2, 9.0)])

    def times(every: float) -> tuple[float, ...]:
        return read_video(
            str(path), every=every, most=40, min_side=32, max_megapixels=100, timeout=30
        ).times

    assert times(100.0) == (0.0, 3.0)  # the start, and the cut
    dense = times(2.0)
    assert dense[:2] == (0.0, 2.0) and 3.0 in dense
    assert all(b - a <= 2.0 + 1e-6 for a, b in zip(dense, dense[1:]))


def test_a_ten_minute_video_costs_at_most_40_frames(settings, tmp_path):
    """120 scenes of 5 s each: far more cuts than frames allowed. At most 40 are embedded
    (counted at the encoder), spread over the whole length."""
    root = tmp_path / "long"
    make_video(root / "ten-minutes.avi", [(n % 9 + 1, 5.0) for n in range(120)], fps=2)
    embedded = []
    with Library(settings) as lib:
        from search.models.encoder import load_encoder

        def counting(lib_, spec):
            encoder = load_encoder(lib_.resolve(spec), "cpu")
            encode = encoder.encode_pixels

            def counted(pixels):
                embedded.append(len(pixels))
                return encode(pixels)

            encoder.encode_pixels = counted
            return encoder

        started = time.perf_counter()
        report = sync(lib, [str(root)], progress=False, encoder_factory=counting)
        elapsed = time.perf_counter() - started
        (video_id,) = lib.catalog.index_ids(lib.serving_model).tolist()[:1]
        frames = lib.catalog.frames_of([video_id], lib.serving_model)[video_id]
    assert report.failed == 0 and report.embedded == 1
    assert sum(embedded) == len(frames.times) <= 40
    assert frames.times[0] == 0.0 and frames.times[-1] > 500
    assert elapsed < 60


@pytest.mark.parametrize("suffix,share", [(".mp4", 0.6), (".webm", 0.6), (".avi", 0.7)])
def test_a_truncated_video_is_a_listed_failure_not_a_hang(library, tmp_path, suffix, share):
    root = tmp_path / "cut"
    whole = make_video(tmp_path / f"whole{suffix}", SCENES)
    root.mkdir()
    cut_short(whole, root / f"stopped{suffix}", share)
    (root / "empty.mov").write_bytes(b"")
    started = time.perf_counter()
    report = sync(library, [str(root)], progress=False)
    assert time.perf_counter() - started < 30
    assert report.failed == 2 and library.catalog.image_count() == 0
    reasons = {Path(f.path).name: f.reason for f in library.catalog.failures()}
    assert "video" in reasons[f"stopped{suffix}"] and "empty.mov" in reasons


def test_decoding_stops_at_the_time_limit(settings, tmp_path):
    root = tmp_path / "slow"
    make_video(root / "clip.mkv", SCENES)
    with Library(settings.with_(video_timeout=1e-6)) as lib:
        sync(lib, [str(root)], progress=False)
        (failure,) = lib.catalog.failures()
    assert "took over" in failure.reason and "IMGSEARCH_VIDEO_TIMEOUT" in failure.reason


def test_without_pyav_videos_are_listed_then_indexed_once_installed(library, tmp_path, monkeypatch):
    root = tmp_path / "clips"
    make_video(root / "clip.mp4", SCENES)
    monkeypatch.setattr(videos, "av_module", lambda: None)
    sync(library, [str(root)], progress=False)
    (failure,) = library.catalog.failures()
    assert failure.reason == videos.MISSING and failure.reason.startswith(codecs.CODEC_MISSING)
    monkeypatch.undo()
    report = sync(library, [str(root)], progress=False)
    assert report.added == 1 and library.catalog.failures() == []


@pytest.mark.parametrize("ann", [False, True], ids=["exact", "hnsw"])
def test_frames_follow_moves_changes_and_removals(settings, tmp_path, monkeypatch, ann):
    """The catalog's frames and the index agree after every kind of change, with an exact
    index (rebuilt) and an approximate one (updated in place)."""
    monkeypatch.setattr(ann_module, "MIN_ANN", 10)
    root = tmp_path / "clips"
    root.mkdir()
    for seed in range(20, 60):  # photos, so the approximate index has something to hold
        scene_picture(seed).save(root / f"p{seed}.jpg")
    make_video(root / "a.webm", SCENES)
    with Library(settings.with_(ann_threshold=10 if ann else 50_000)) as lib:
        sync(lib, [str(root)], progress=False)
        model = lib.serving_model
        (video_id,) = [h.id for h in video_hits(lib, query_image(tmp_path, 2))[1]]
        assert lib.store.get(model)[0].kind == ("hnsw-ip" if ann else "flat-ip")
        before = lib.catalog.frames_of([video_id], model)[video_id]

        # Moved: same id, same frames, found at the same time.
        (root / "trips").mkdir()
        shutil.move(root / "a.webm", root / "trips" / "a.webm")
        assert sync(lib, [], progress=False).moved == 1
        after = lib.catalog.frames_of([video_id], model)[video_id]
        assert after.times == before.times
        _, found = video_hits(lib, query_image(tmp_path, 2))
        assert [h.id for h in found] == [video_id] and found[0].path.endswith("trips/a.webm")
        assert SECOND[0] - 1 <= found[0].t <= SECOND[1] + 1

        # Changed: other scenes in another order; the old frames are gone from both.
        make_video(root / "trips" / "a.webm", [(5, 3.0), (2, 3.0)])
        sync(lib, [], progress=False)
        changed = lib.catalog.frames_of([video_id], model)[video_id]
        assert changed.times == (0.0, 3.0)
        _, found = video_hits(lib, query_image(tmp_path, 2))
        assert found[0].id == video_id and 2.0 <= found[0].t <= 7.0
        manifest, index = lib.store.get(model)
        assert np.count_nonzero(index.ids() == video_id) == 2
        if ann:  # the graph was updated in place, not built anew
            assert manifest.params["updates"] >= 1

        # Removed: no frames, nothing in the index.
        (root / "trips" / "a.webm").unlink()
        sync(lib, [], progress=False)
        assert lib.catalog.frames_of([video_id], model) == {}
        assert video_id not in lib.store.get(model)[1].ids()
        _, found = video_hits(lib, query_image(tmp_path, 2))
        assert found == []


def test_an_index_with_repeated_ids_answers_each_once(monkeypatch):
    """A video's frames share its id: exact and HNSW searches give each id once, at its
    best vector; filtered searches and removal reach every frame."""
    monkeypatch.setattr(ann_module, "MIN_ANN", 10)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(400, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.arange(400)
    ids[100:140] = 1000  # one video, 40 frames
    for threshold, kind in ((10_000, "flat-ip"), (10, "hnsw-ip")):
        index = build_index(ids, vectors, IndexPolicy(ann_threshold=threshold)).index
        assert index.kind == kind
        query = vectors[120]
        scores, found = index.search(query, 10)
        assert len(set(found.tolist())) == len(found) == 10 and found[0] == 1000
        assert scores[0] == pytest.approx(1.0, abs=1e-4)
        scores, found = index.search(query, 5, allowed=np.array([1000, 3]))
        assert sorted(found.tolist()) == [3, 1000]
        index.remove(np.array([1000]))
        assert 1000 not in index.ids() and len(index) == 360
        assert 1000 not in index.search(query, 50)[1]


def test_thumbnail_page_and_file_of_a_video(clips, tmp_path):
    lib, root = clips
    _, (hit,) = video_hits(lib, query_image(tmp_path, 2))
    client = create_app(library=lib).test_client()
    doc = client.get("/api/search?q=holiday&mode=text").get_json()
    (found,) = [h for h in doc["results"] if h["kind"] == "video"]
    assert found["t"] == 0.0 and "t=0.0" in found["thumb_url"]

    # The thumbnail at t shows the second scene's picture; at 0 the first's.
    def thumb(t: float) -> Image.Image:
        response = client.get(f"/thumbs/{hit.id}?t={t}")
        assert response.status_code == 200 and response.mimetype == "image/jpeg"
        return Image.open(io.BytesIO(response.data)).convert("RGB")

    def distance(image: Image.Image, seed: int) -> float:
        want = scene_picture(seed).resize(image.size)
        return float(np.abs(np.asarray(image, float) - np.asarray(want, float)).mean())

    at_second = thumb(hit.t)
    assert distance(at_second, 2) < distance(at_second, 1)
    assert distance(thumb(0), 1) < distance(thumb(0), 2)

    image = client.get(f"/api/images/{hit.id}").get_json()
    assert image["kind"] == "video" and image["duration"] == pytest.approx(12.0)
    assert image["text"] is None  # never read: reading text is off
    page = client.get(f"/images/{hit.id}?t={hit.t}").get_data(as_text=True)
    assert "<video" in page and f"#t={hit.t:.3f}" in page
    # The original streams in ranges, so the browser can seek.
    with client.get(f"/files/{hit.id}", headers={"Range": "bytes=0-99"}) as ranged:
        assert ranged.status_code == 206 and ranged.mimetype == "video/webm"
        assert ranged.data == (root / "holiday.webm").read_bytes()[:100]


def test_tags_score_a_video_by_its_frames_mean(clips):
    lib, _ = clips
    model = lib.serving_model
    lib.tagger().add(model, {"anything": ("a photo",)})
    ids, vectors = lib.catalog.vectors(model)
    index_ids, index_vectors = one_per_image(*lib.store.get(model)[1].stored())
    assert index_ids.tolist() == ids.tolist()
    np.testing.assert_allclose(index_vectors, vectors, atol=1e-5)
