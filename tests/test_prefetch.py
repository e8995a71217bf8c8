"""Decoding while the model loads (indexer.sync.prefetch): used when the guess is right, dropped
when it is wrong, never a write before the model resolves, never a model loaded for nothing."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from imagetree import make_jpeg

import indexer.sync.prefetch
import indexer.sync.run
from indexer.sync.pipeline import WorkItem, make_decoder
from indexer.sync.prefetch import ModelLoader, Prefetch
from indexer.sync.run import sync
from indexer.sync.scan import scan_root
from search.errors import ModelError
from search.library import Library
from search.models.encoder import prepare_pixels
from search.models.spec import ModelSpec, PrepareGuess, preprocess_guess
from search.query.searcher import SearchRequest


def _vectors(lib: Library, model_id: str) -> dict[str, np.ndarray]:
    ids, vecs = lib.catalog.vectors(model_id)
    paths = {i: m.path for i, m in lib.catalog.images(ids.tolist()).items()}
    return {paths[i]: v for i, v in zip(ids, vecs, strict=True)}


@pytest.fixture
def spy(monkeypatch):
    """Counts results the pipeline took from the prefetch."""
    taken = []
    real = Prefetch.take

    def take(self, item):
        got = real(self, item)
        if got is not None:
            taken.append(got)
        return got

    monkeypatch.setattr(Prefetch, "take", take)
    return taken


@pytest.mark.parametrize("guess_right", [True, False])
def test_prefetched_files_embed_as_the_pipeline_would(
    settings, tmp_path, monkeypatch, spy, guess_right
):
    photos = tmp_path / "photos"
    for i in range(20):
        make_jpeg(photos / f"{i:02d}.jpg", i, (160, 120))
    with Library(settings.with_(home=tmp_path / "plain")) as lib, monkeypatch.context() as m:
        m.setattr(indexer.sync.run, "start_prefetch", lambda *args, **kwargs: None)
        report = sync(lib, [str(photos)], progress=False)
        plain = _vectors(lib, report.model_id)
    if not guess_right:  # a pretrained tag with its own input size, say
        monkeypatch.setattr(
            indexer.sync.prefetch, "preprocess_guess", lambda *args: PrepareGuess(32)
        )
    taken = spy
    real_load = Library.load_source

    def slow_load(self, source):  # as a real model's seconds of loading would be
        time.sleep(0.5)
        return real_load(self, source)

    monkeypatch.setattr(Library, "load_source", slow_load)
    with Library(settings.with_(home=tmp_path / "ahead")) as lib:
        report = sync(lib, [str(photos)], progress=False)
        ahead = _vectors(lib, report.model_id)
    assert report.added == 20 and set(ahead) == set(plain)
    assert (len(taken) > 0) is guess_right
    for path, v in plain.items():
        assert float(v @ ahead[path]) > 0.9999, path


def test_guess_reads_the_models_config_without_torch(settings):
    guess = preprocess_guess(ModelSpec("imgsearch-tiny"), settings.models_dir)
    assert guess == PrepareGuess(64)
    assert preprocess_guess(ModelSpec("ViT-B-32"), settings.models_dir) == PrepareGuess(224)
    assert preprocess_guess(ModelSpec("no-such-model"), settings.models_dir) is None
    assert preprocess_guess(ModelSpec("hf-hub:org/repo"), settings.models_dir) is None


def test_a_model_that_fails_to_resolve_writes_nothing(settings, tmp_path):
    photos = tmp_path / "photos"
    for i in range(5):
        make_jpeg(photos / f"{i}.jpg", i)
    bad = settings.with_(model="imgsearch-tiny", pretrained="/no/such/weights.pt")
    with Library(bad) as lib, pytest.raises(ModelError):
        sync(lib, [str(photos)], progress=False)
    with Library(settings) as lib:
        assert lib.catalog.roots() == [] and lib.catalog.image_count() == 0


def test_a_file_changed_after_prefetch_is_decoded_afresh(tmp_path):
    path = make_jpeg(tmp_path / "a.jpg", 1, (120, 90))
    (f,) = scan_root(str(tmp_path))
    same = WorkItem(str(tmp_path), str(path), f.size, f.mtime_ns, "changed")
    decode = make_decoder(lambda im: prepare_pixels(im, 32), max_megapixels=100, min_side=32)
    prefetch = Prefetch([same], decode, PrepareGuess(32), workers=1)
    try:
        changed = WorkItem(str(tmp_path), str(path), f.size + 1, f.mtime_ns, "changed")
        assert prefetch.take(changed) is None
        got = prefetch.take(same)
        assert got.item == same and got.pixels.shape == (32, 32, 3)
        assert prefetch.take(same) is None  # taken once
    finally:
        prefetch.close()


def test_loader_resolves_at_once_and_loads_only_when_asked():
    loads = []
    loader = ModelLoader(lambda: "source", lambda src: loads.append(src) or "encoder")
    assert loader.source() == "source"
    loader.close()
    assert loads == []

    loader = ModelLoader(lambda: "source", lambda src: loads.append(src) or "encoder")
    assert loader.encoder() == "encoder" and loads == ["source"]
    loader.close()

    def fail():
        raise ModelError("offline")

    loader = ModelLoader(fail, lambda src: loads.append(src))
    with pytest.raises(ModelError, match="offline"):
        loader.source()
    loader.close()
    assert loads == ["source"]
    # close() waited for each loader's thread: none is left running behind the command.
    assert not [t for t in threading.enumerate() if t.name == "model-load" and t.is_alive()]


def test_an_interrupt_does_not_wait_for_the_model_to_resolve(settings, tmp_path, monkeypatch):
    """Resolving may be a download: Ctrl-C during the folder walk returns at once, and
    nothing was written."""
    photos = tmp_path / "photos"
    make_jpeg(photos / "a.jpg", 1)
    real_resolve = Library.resolve

    def slow_resolve(self, spec):
        time.sleep(3)
        return real_resolve(self, spec)

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(Library, "resolve", slow_resolve)
    monkeypatch.setattr(indexer.sync.run, "scan_roots", interrupted)
    with Library(settings) as lib:
        started = time.perf_counter()
        with pytest.raises(KeyboardInterrupt):
            sync(lib, [str(photos)], progress=False)
        assert time.perf_counter() - started < 1.5
        assert lib.catalog.roots() == []


def test_a_sync_with_nothing_to_embed_leaves_a_catalogued_model_unresolved(
    settings, tmp_path, monkeypatch, tiny_encoder
):
    """Re-runs, renames and deletions need no model: with a model the catalog already
    holds for the same spec (a weights file here), torch is never even imported for them."""
    from safetensors.torch import save_file

    weights = tmp_path / "tiny.safetensors"
    save_file(
        {k: v.float().contiguous() for k, v in tiny_encoder.model.state_dict().items()},
        str(weights),
    )
    s = settings.with_(pretrained=str(weights))
    photos = tmp_path / "photos"
    for i in range(4):
        make_jpeg(photos / f"{i}.jpg", i)
    with Library(s) as lib:
        first = sync(lib, [str(photos)], progress=False)
    assert first.embedded == 4

    def no_resolve(self, spec):
        raise AssertionError("resolved a model although nothing needed embedding")

    def no_load(lib, spec):
        raise AssertionError("loaded a model although nothing needed embedding")

    with monkeypatch.context() as m:
        m.setattr(Library, "resolve", no_resolve)
        with Library(s) as lib:
            again = sync(lib, [], progress=False, encoder_factory=no_load)
            assert (again.model_id, again.unchanged, again.embedded) == (first.model_id, 4, 0)
            (photos / "0.jpg").rename(photos / "renamed.jpg")
            (photos / "1.jpg").unlink()
            moved = sync(lib, [], progress=False, encoder_factory=no_load)
            assert (moved.moved, moved.removed, moved.embedded) == (1, 1, 0)
    with Library(s) as lib:  # searching does need the model
        hits = lib.searcher.search(SearchRequest(text="a photo", k=10)).hits
        assert sorted(Path(h.path).name for h in hits) == ["2.jpg", "3.jpg", "renamed.jpg"]

    make_jpeg(photos / "new.jpg", 9)  # now the model is needed, and resolved
    with Library(s) as lib:
        more = sync(lib, [], progress=False)
    assert (more.model_id, more.added, more.embedded) == (first.model_id, 1, 1)

    # Other weights under the same path: not the catalogued model, so it is resolved.
    state = {k: v.float().contiguous() * 0.5 for k, v in tiny_encoder.model.state_dict().items()}
    save_file(state, str(weights))
    with Library(s) as lib:
        assert lib.known_model_id(lib.active_spec()) is None
        switched = sync(lib, [], progress=False)
    assert switched.model_id != first.model_id and switched.embedded == 4
