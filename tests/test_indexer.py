"""The write path: hostile folders, incremental sync, renames, deletes, crashes."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections import Counter

import numpy as np
import pytest
from imagetree import make_hostile_tree, make_jpeg
from PIL import Image

from indexer.sync.run import sync
from indexer.sync.scan import content_hash
from search.catalog.store import Catalog
from search.library import Library
from search.query.searcher import SearchRequest


def _never_load(lib, spec):
    raise AssertionError("the model was loaded although nothing needed embedding")


def _paths(lib) -> dict[str, int]:
    ids = lib.catalog.filter_ids()
    return {m.path: i for i, m in lib.catalog.images(ids).items()}


def _folder(root, n, start_seed=0):
    return [make_jpeg(root / f"sub{i % 3}" / f"img_{i:03d}.jpg", start_seed + i) for i in range(n)]


def test_hostile_tree_indexes_good_files_and_lists_bad_ones(library, tmp_path):
    tree = make_hostile_tree(tmp_path / "photos")
    report = sync(library, [str(tree.root)], progress=False)

    assert report.seen == len(tree.good) + len(tree.failures)
    assert report.added == len(tree.good)
    assert report.failed == len(tree.failures)
    catalogued = _paths(library)
    assert set(catalogued) == {str(p) for p in tree.good}
    for ignored in tree.ignored:
        assert str(ignored) not in catalogued
    failures = {f.path: f.reason.lower() for f in library.catalog.failures()}
    assert set(failures) == {str(p) for p in tree.failures}
    for path, expected in tree.failures.items():
        assert expected in failures[str(path)], (path, failures[str(path)])

    rotated = library.catalog.image(catalogued[str(tree.roles["exif_rotated"])])
    assert (rotated.width, rotated.height) == (64, 96)  # stored 96x64, orientation 6
    dated = library.catalog.image(catalogued[str(tree.roles["exif_date"])])
    assert dated.taken_at is not None and dated.taken_at.year == 2019
    assert str(tree.roles["dup_a"]) in catalogued and str(tree.roles["dup_b"]) in catalogued

    hits = library.searcher.search(SearchRequest(text="a photo", k=100)).hits
    assert {h.path for h in hits} == {str(p) for p in tree.good}


def test_rerun_embeds_nothing(library, tmp_path):
    files = _folder(tmp_path / "photos", 12)
    first = sync(library, [str(tmp_path / "photos")], progress=False)
    assert (first.added, first.embedded) == (12, 12)
    again = sync(library, [], progress=False, encoder_factory=_never_load)
    assert (again.seen, again.unchanged, again.embedded, again.added) == (12, 12, 0, 0)
    assert len(files) == library.catalog.image_count()


def test_deleting_three_removes_exactly_those(library, tmp_path):
    files = _folder(tmp_path / "photos", 10)
    sync(library, [str(tmp_path / "photos")], progress=False)
    before = _paths(library)
    for f in files[2:5]:
        f.unlink()
    report = sync(library, [], progress=False, encoder_factory=_never_load)
    assert report.removed == 3
    after = _paths(library)
    assert set(after) == set(before) - {str(f) for f in files[2:5]}
    assert all(after[p] == before[p] for p in after)  # survivors keep their ids
    ids, _ = library.catalog.vectors(library.serving_model)
    assert sorted(ids.tolist()) == sorted(after.values())


def test_renamed_and_moved_files_keep_id_and_vector(library, tmp_path):
    files = _folder(tmp_path / "photos", 6)
    sync(library, [str(tmp_path / "photos")], progress=False)
    model = library.serving_model
    before = _paths(library)
    renamed = files[0].with_name("renamed.jpg")
    files[0].rename(renamed)
    moved = tmp_path / "photos" / "elsewhere" / "deeper" / files[1].name
    moved.parent.mkdir(parents=True)
    shutil.move(files[1], moved)
    old_vec = library.catalog.vector_of(before[str(files[0])], model)

    report = sync(library, [], progress=False, encoder_factory=_never_load)

    assert (report.moved, report.removed, report.added, report.embedded) == (2, 0, 0, 0)
    after = _paths(library)
    assert after[str(renamed)] == before[str(files[0])]
    assert after[str(moved)] == before[str(files[1])]
    assert np.array_equal(library.catalog.vector_of(after[str(renamed)], model), old_vec)


def test_changed_file_is_reembedded_under_the_same_id(library, tmp_path):
    files = _folder(tmp_path / "photos", 4)
    sync(library, [str(tmp_path / "photos")], progress=False)
    model = library.serving_model
    image_id = _paths(library)[str(files[0])]
    old = library.catalog.vector_of(image_id, model)
    make_jpeg(files[0], 999, size=(200, 150))
    report = sync(library, [], progress=False)
    assert (report.updated, report.embedded, report.unchanged) == (1, 1, 3)
    assert _paths(library)[str(files[0])] == image_id
    assert library.catalog.image(image_id).width == 200
    assert not np.allclose(library.catalog.vector_of(image_id, model), old)


@pytest.mark.parametrize("how", ["emptied", "unplugged"])
def test_missing_or_empty_root_removes_nothing(library, tmp_path, how):
    """RELIABILITY 21: a drive unplugged (the folder gone) or a share mounted empty: no
    row deleted, search still answers with the old photos, and once the folder is back
    the same ids, nothing embedded again."""
    root = tmp_path / "mnt" / "photos"
    _folder(root, 5)
    sync(library, [str(root)], progress=False)
    before = _paths(library)
    away = tmp_path / "away"
    if how == "emptied":
        away.mkdir()
        for child in root.iterdir():
            child.rename(away / child.name)
    else:
        root.rename(away)
    report = sync(library, [], progress=False, encoder_factory=_never_load)
    assert report.removed == 0
    assert report.unavailable_roots == [str(root)]
    assert library.catalog.image_count() == 5
    hits = library.searcher.search(SearchRequest(text="a photo", k=10)).hits
    assert {h.path for h in hits} == set(before)

    if how == "emptied":
        for child in away.iterdir():
            child.rename(root / child.name)
    else:
        away.rename(root)
    back = sync(library, [], progress=False, encoder_factory=_never_load)
    assert (back.unchanged, back.embedded, back.removed, back.unavailable_roots) == (5, 0, 0, [])
    assert _paths(library) == before


def test_interrupted_run_keeps_committed_batches_and_resumes(library, tmp_path):
    _folder(tmp_path / "photos", 30)
    batch = library.settings.batch_size

    def crashing(lib, spec):
        encoder = lib.load_source(lib.resolve(spec))
        real, calls = encoder.encode_pixels, []

        def encode(pixels):
            calls.append(len(pixels))
            if len(calls) > 2:
                raise KeyboardInterrupt  # as if the user pressed Ctrl-C mid-run
            return real(pixels)

        encoder.encode_pixels = encode
        return encoder

    with pytest.raises(KeyboardInterrupt):
        sync(library, [str(tmp_path / "photos")], progress=False, encoder_factory=crashing)
    assert library.catalog.image_count() == 2 * batch
    # A first run: what it committed is served (nothing else could be).
    hits = library.searcher.search(SearchRequest(text="a photo", k=100)).hits
    assert {h.path for h in hits} == set(_paths(library)) and len(hits) == 2 * batch

    report = sync(library, [], progress=False)
    assert report.added == 30 - 2 * batch and report.unchanged == 2 * batch
    paths = _paths(library)
    assert len(paths) == 30 == library.catalog.image_count()
    ids, _ = library.catalog.vectors(library.serving_model)
    assert len(ids) == 30


def test_excluded_and_nested_roots(library, tmp_path):
    _folder(tmp_path / "photos", 6)
    make_jpeg(tmp_path / "photos" / "raw" / "skip.jpg", 77)
    sync(library, [str(tmp_path / "photos" / "sub0")], progress=False)
    assert library.catalog.image_count() == 2
    # Adding the parent folds the nested root in; its images keep their ids.
    before = _paths(library)
    sync(library, [str(tmp_path / "photos")], progress=False)
    after = _paths(library)
    assert len(library.catalog.roots()) == 1
    assert all(after[p] == i for p, i in before.items())
    assert str(tmp_path / "photos" / "raw" / "skip.jpg") in after

    with Library(library.settings.with_(exclude=("raw",))) as excluding:
        report = sync(excluding, [], progress=False, encoder_factory=_never_load)
        assert report.removed == 1
        assert str(tmp_path / "photos" / "raw" / "skip.jpg") not in _paths(excluding)


def test_non_utf8_file_name_is_listed_not_fatal(library, tmp_path):
    root = tmp_path / "photos"
    make_jpeg(root / "fine.jpg", 1)
    bad = os.path.join(os.fsencode(root), b"caf\xe9.jpg")  # Latin-1 bytes, not UTF-8
    shutil.copy(root / "fine.jpg", bad)
    report = sync(library, [str(root)], progress=False)
    assert (report.added, report.failed) == (1, 1)
    (failure,) = library.catalog.failures()
    assert "not valid UTF-8" in failure.reason and failure.path.endswith("caf\\xe9.jpg")
    again = sync(library, [], progress=False, encoder_factory=_never_load)
    assert (again.unchanged, again.failed) == (2, 0)


def test_links_leading_outside_the_root_are_not_followed(library, tmp_path):
    root = tmp_path / "photos"
    make_jpeg(root / "inside.jpg", 1)
    make_jpeg(tmp_path / "elsewhere" / "secret.jpg", 2)
    os.symlink(tmp_path / "elsewhere", root / "link-out")
    os.symlink(tmp_path / "elsewhere" / "secret.jpg", root / "file-out.jpg")
    os.symlink(root / "inside.jpg", root / "alias.jpg")  # inside: followed
    sync(library, [str(root)], progress=False)
    assert set(_paths(library)) == {str(root / "inside.jpg"), str(root / "alias.jpg")}


def _count_reads(monkeypatch) -> Counter:
    """(method, root id) → calls, for the catalog reads an index run plans from."""
    calls: Counter = Counter()
    for name in ("file_records", "failure_records", "missing_embeddings"):
        real = getattr(Catalog, name)

        def counted(self, *args, _name=name, _real=real):
            calls[_name, args[-1]] += 1  # the root id is the last argument of each
            return _real(self, *args)

        monkeypatch.setattr(Catalog, name, counted)
    return calls


def test_an_index_run_reads_each_roots_records_once(library, tmp_path, monkeypatch, tiny_encoder):
    """Plan, then fetch, then compute, then write: every change at once, a parent folder
    folding two roots in, and a switch to a model known only once it resolves, each run
    reading each root's files and failures once and its missing vectors once."""
    from safetensors.torch import save_file

    photos = tmp_path / "photos"
    a, b = _folder(photos / "a", 6), _folder(photos / "b", 4, start_seed=10)
    (photos / "a" / "bad.jpg").write_bytes(b"not a jpeg")
    first = sync(library, [str(photos / "a"), str(photos / "b")], progress=False)
    assert (first.added, first.failed) == (10, 1)
    root_ids = [r.id for r in library.catalog.roots()]
    a[0].rename(a[0].with_name("renamed.jpg"))
    make_jpeg(a[1], 99, size=(200, 150))
    a[2].unlink()
    make_jpeg(b[0].with_name("more.jpg"), 60)
    make_jpeg(photos / "c" / "new.jpg", 61)

    with monkeypatch.context() as m:
        calls = _count_reads(m)
        report = sync(library, [str(photos)], progress=False)
    assert (report.moved, report.updated, report.removed, report.added) == (1, 1, 1, 2)
    assert (report.unchanged, report.failed, report.embedded) == (7 + 1, 0, 3)
    reads = ("file_records", "failure_records", "missing_embeddings")
    assert calls == {(name, r): 1 for name in reads for r in root_ids}
    (root,) = library.catalog.roots()
    assert root.path == str(photos) and root.image_count == 11

    weights = tmp_path / "other.safetensors"
    state = {k: v.float().contiguous() * 0.5 for k, v in tiny_encoder.model.state_dict().items()}
    save_file(state, str(weights))
    make_jpeg(photos / "c" / "newer.jpg", 62)
    b[1].rename(b[1].with_name("renamed.jpg"))  # the vectors it lacks follow it
    b[2].unlink()
    make_jpeg(b[3], 98, size=(200, 150))  # embedded once, as changed
    with (
        Library(library.settings.with_(pretrained=str(weights))) as lib,
        monkeypatch.context() as m,
    ):
        assert lib.known_model_id(lib.active_spec()) is None  # resolved: torch tells the id
        calls = _count_reads(m)
        switched = sync(lib, [], progress=False)
        assert (switched.added, switched.updated, switched.moved) == (1, 1, 1)
        assert (switched.removed, switched.embedded) == (1, 11)
        assert calls == {(name, root.id): 1 for name in reads}
        assert lib.serving_model == switched.model_id != report.model_id
        ids, _ = lib.catalog.vectors(switched.model_id)
        assert sorted(ids.tolist()) == sorted(_paths(lib).values())
        assert str(b[1].with_name("renamed.jpg")) in _paths(lib)


def _set_mtime(path, seconds: int) -> None:
    os.utime(path, ns=(seconds * 10**9, seconds * 10**9))


def _same_length(a, b) -> None:
    """Pad the shorter JPEG after its end marker (decoders ignore trailing bytes)."""
    la, lb = a.stat().st_size, b.stat().st_size
    short = a if la < lb else b
    with open(short, "ab") as f:
        f.write(b"\0" * abs(la - lb))


def test_a_touched_file_is_hashed_not_reembedded_and_old_files_are_not_read(
    library, tmp_path, monkeypatch
):
    """RELIABILITY 19: `touch` keeps the vector; a re-run reads no bytes of files whose
    size and time are as catalogued (modified long before they were read)."""
    import indexer.sync.plan

    files = _folder(tmp_path / "photos", 4)
    old = int(time.time()) - 3600
    for f in files:
        _set_mtime(f, old)
    sync(library, [str(tmp_path / "photos")], progress=False)
    image_id = _paths(library)[str(files[0])]
    vector = library.catalog.vector_of(image_id, library.serving_model)
    hashed = []
    real_hash = indexer.sync.plan.content_hash
    monkeypatch.setattr(
        indexer.sync.plan, "content_hash", lambda p, s: hashed.append(p) or real_hash(p, s)
    )

    again = sync(library, [], progress=False, encoder_factory=_never_load)
    assert (again.unchanged, again.embedded, hashed) == (4, 0, [])

    _set_mtime(files[0], old + 60)  # touch
    touched = sync(library, [], progress=False, encoder_factory=_never_load)
    assert (touched.unchanged, touched.embedded, touched.updated) == (4, 0, 0)
    assert hashed == [str(files[0])]
    assert (
        library.catalog.file_records(library.catalog.roots()[0].id)[str(files[0])].mtime_ns
        == (old + 60) * 10**9
    )
    assert np.array_equal(library.catalog.vector_of(image_id, library.serving_model), vector)
    hashed.clear()
    sync(library, [], progress=False, encoder_factory=_never_load)
    assert hashed == []  # the new time is recorded: not hashed again


def test_an_edit_keeping_size_and_second_is_reembedded(library, tmp_path):
    """RELIABILITY 19 on a file system that keeps whole seconds: a file written in the
    second it was indexed, then edited in that second to the same length, is re-embedded."""
    photos = tmp_path / "photos"
    files = _folder(photos, 3)
    edit = make_jpeg(tmp_path / "edit.jpg", 500)
    _same_length(files[0], edit)
    second = int(time.time())
    for f in files:
        _set_mtime(f, second)  # as a coarse file system records a write in this second
    sync(library, [str(photos)], progress=False)
    image_id = _paths(library)[str(files[0])]
    before = library.catalog.vector_of(image_id, library.serving_model)

    shutil.copyfile(edit, files[0])
    _set_mtime(files[0], second)  # same size, same recorded second
    report = sync(library, [], progress=False)
    assert (report.updated, report.embedded, report.unchanged) == (1, 1, 2)
    after = library.catalog.vector_of(image_id, library.serving_model)
    assert not np.allclose(after, before)
    (record,) = [r for r in library.catalog.file_records(1).values() if r.id == image_id]
    assert record.content_hash == content_hash(str(edit), edit.stat().st_size)


def test_a_file_growing_while_it_is_read_is_not_stored_and_is_picked_up_next_run(
    library, tmp_path, monkeypatch
):
    """RELIABILITY 20: a writer thread appends to the file while the decoder reads it."""
    import indexer.sync.pipeline

    files = _folder(tmp_path / "photos", 5)
    growing = files[2]
    real_load = indexer.sync.pipeline.load_image

    def load_while_written(f, **kw):
        if f.name == str(growing):

            def append():
                with growing.open("ab") as out:
                    out.write(b"\0" * 4096)

            writer = threading.Thread(target=append)
            writer.start()
            writer.join()
        return real_load(f, **kw)

    with monkeypatch.context() as m:
        m.setattr(indexer.sync.pipeline, "load_image", load_while_written)
        report = sync(library, [str(tmp_path / "photos")], progress=False)
    assert (report.added, report.failed) == (4, 1)
    (failure,) = library.catalog.failures()
    assert failure.path == str(growing) and failure.reason.startswith("changed_during_read")
    assert str(growing) not in _paths(library)
    ids, _ = library.catalog.vectors(library.serving_model)
    assert sorted(ids.tolist()) == sorted(_paths(library).values())

    report = sync(library, [], progress=False)
    assert (report.added, report.failed, report.unchanged) == (1, 0, 4)
    assert str(growing) in _paths(library) and library.catalog.failures() == []


def test_out_of_memory_halves_the_batch_and_a_photo_too_large_alone_fails(settings, tmp_path):
    """RELIABILITY 30: the encoder runs out of memory on batches over 8 and always on one
    (all-black) photo: batches halve, every other photo is embedded with the vector it
    gets anyway, the black one is listed `too_large`, and the run completes."""
    import torch

    photos = tmp_path / "photos"
    _folder(photos, 30)
    black = photos / "black.jpg"
    Image.new("RGB", (96, 72)).save(black, quality=95)
    sizes = []

    def short_of_memory(lib, spec):
        encoder = lib.load_source(lib.resolve(spec))
        real = encoder.encode_pixels

        def encode(pixels):
            sizes.append(len(pixels))
            if len(pixels) > 8 or (np.asarray(pixels).reshape(len(pixels), -1).max(1) < 8).any():
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
            return real(pixels)

        encoder.encode_pixels = encode
        return encoder

    with Library(settings.with_(batch_size=32)) as lib:
        report = sync(lib, [str(photos)], progress=False, encoder_factory=short_of_memory)
        assert (report.added, report.failed) == (30, 1)
        (failure,) = lib.catalog.failures()
        assert failure.path == str(black) and failure.reason.startswith("too_large")
        embedded = {p: lib.catalog.vector_of(i, lib.serving_model) for p, i in _paths(lib).items()}
    assert sizes[:3] == [31, 15, 7]  # the batch (30 photos and the black one) halves
    assert max(sizes[2:]) <= 8  # and stays at what fitted

    with Library(settings.with_(home=tmp_path / "plain")) as lib:
        sync(lib, [str(photos)], progress=False)
        plain = {p: lib.catalog.vector_of(i, lib.serving_model) for p, i in _paths(lib).items()}
    assert set(embedded) == set(plain) - {str(black)}
    for path, vector in embedded.items():
        assert np.allclose(vector, plain[path], atol=1e-5), path


def test_bad_files_mid_batch_leave_every_vector_on_its_own_path(library, tmp_path):
    """RELIABILITY 2: broken files inside batches (of 8 here) take nothing with them:
    each stored vector is the one its own file gets when embedded alone."""
    from search.imageio import load_image

    folder = tmp_path / "photos"
    good = [make_jpeg(folder / f"{i:02}.jpg", 300 + i) for i in range(20)]
    bad = {"03b.jpg": good[3].read_bytes()[:500], "09b.jpg": b"", "13b.png": os.urandom(900)}
    bad["17b.jpg"] = b"<html><body>not a photo</body></html>"
    for name, data in bad.items():
        (folder / name).write_bytes(data)
    report = sync(library, [str(folder)], progress=False)
    assert (report.added, report.failed) == (20, 4)

    encoder = library.load_source(library.resolve(library.active_spec()))
    alone = np.concatenate(
        [encoder.encode_images([load_image(p, min_side=encoder.image_size).image]) for p in good]
    )
    paths = _paths(library)
    stored = np.stack(
        [library.catalog.vector_of(paths[str(p)], library.serving_model) for p in good]
    )
    similarity = stored @ alone.T
    assert (similarity.argmax(axis=1) == np.arange(len(good))).all()
    assert similarity.diagonal().min() > 0.999, similarity.diagonal().min()


def test_hidden_files_are_indexed_only_when_asked(settings, tmp_path):
    """RELIABILITY 15: dot files and folders are skipped by default and indexed with
    --include-hidden (IMGSEARCH_INCLUDE_HIDDEN); the folders of NAS boxes and OSes never."""
    from test_cli import TINY, run

    tree = make_hostile_tree(tmp_path / "photos")
    home = tmp_path / "home"
    plain = json.loads(run("index", tree.root, *TINY, "--json", home=home).stdout)
    assert plain["added"] == len(tree.good)
    hidden = [
        p
        for p in tree.ignored
        if any(part.startswith(".") for part in p.relative_to(tree.root).parts)
    ]
    hidden_jpegs = [p for p in hidden if p.suffix.lower() == ".jpg"]
    assert {p.name for p in hidden_jpegs} == {
        "thumb.jpg",
        "deleted.jpg",
        ".hidden.jpg",
        "._IMG_1.JPG",
    }

    asked = json.loads(run("index", "--include-hidden", *TINY, "--json", home=home).stdout)
    assert asked["added"] == len(hidden_jpegs)
    with Library(settings.with_(home=home)) as lib:
        catalogued = set(_paths(lib))
    assert catalogued == {str(p) for p in tree.good + hidden_jpegs}
    for never in ("@eaDir", "$RECYCLE.BIN", "System Volume Information"):
        assert not any(f"/{never}/" in p for p in catalogued), never

    env = {"IMGSEARCH_INCLUDE_HIDDEN": "1"}
    again = json.loads(run("index", *TINY, "--json", home=home, env=env).stdout)
    assert (again["removed"], again["added"]) == (0, 0)
