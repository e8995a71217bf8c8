"""The ONNX path (search.models.onnx): exported once per model at the end of an index run,
checked against torch, used by queries and small index runs without importing torch,
and never by another model."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from imagetree import make_jpeg
from safetensors.torch import save_file
from tinylib import tiny_settings

from indexer.sync.run import sync
from search.library import Library
from search.models.encoder import load_encoder
from search.models.onnx import store
from search.models.onnx.choose import usable_export
from search.models.onnx.encoder import OnnxEncoder
from search.models.spec import (
    BUNDLED_CONFIGS,
    OPEN_CLIP_CONFIG,
    SIDECAR,
    WEIGHT_FILES,
    ModelSpec,
    file_digest,
    resolve,
)
from search.query.searcher import SearchRequest

REPO = Path(__file__).resolve().parent.parent
TEXTS = [
    "",
    "a dog in the snow",
    "A RED SQUARE!!!",
    "crème brûlée — café 東京 🐶🎉",
    "2:cat +sofa -dog",
    " ".join(["a very long caption"] * 40),
]


def photos(folder: Path, seeds) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in seeds:
        make_jpeg(folder / f"{i}.jpg", i)
    return folder


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    """A tiny library indexed once with engine auto: torch embeds, then the export."""
    base = tmp_path_factory.mktemp("onnx")
    settings = tiny_settings(base / "home", engine="auto")
    folder = photos(base / "photos", range(6))
    with Library(settings) as lib:
        report = sync(lib, [str(folder)], progress=False)
    return settings, folder, report


def copy_library(indexed, dest: Path):
    settings, folder, _ = indexed
    shutil.copytree(settings.home, dest / "home")
    return settings.with_(home=dest / "home"), folder


def run_python(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_index_run_exports_the_model_once(indexed):
    settings, _, report = indexed
    assert (report.engine, report.exported) == ("torch", True)
    export = store.find(settings.cache_dir, report.model_id)
    assert export is not None and export.text.trim and export.image is not None
    assert min(export.min_cosine.values()) >= 0.999
    with Library(settings) as lib:  # nothing new: no second export
        again = sync(lib, [], progress=False)
    assert (again.embedded, again.exported) == (0, False)


@pytest.mark.parametrize("precision", ["fp32", "auto"])
def test_onnx_vectors_agree_with_torch(indexed, precision):
    settings, folder, report = indexed
    export = store.find(settings.cache_dir, report.model_id)
    fast = OnnxEncoder(export)
    source = resolve(
        "imgsearch-tiny", "none", models_dir=settings.models_dir, cache_dir=settings.cache_dir
    )
    torch_encoder = load_encoder(source, "cpu", precision)

    for batch in (TEXTS, *([t] for t in TEXTS)):  # together and one at a time
        cos = (fast.encode_texts(batch) * torch_encoder.encode_texts(batch)).sum(axis=1)
        assert cos.min() >= 0.999, (batch, cos)

    from PIL import Image

    images = [Image.open(p).convert("RGB") for p in sorted(folder.glob("*.jpg"))]
    assert np.array_equal(fast.prepare(images[0]), torch_encoder.prepare(images[0]))
    cos = (fast.encode_images(images) * torch_encoder.encode_images(images)).sum(axis=1)
    assert cos.min() >= 0.999, cos


def test_search_runs_on_the_export_without_torch_and_ranks_like_torch(indexed, tmp_path):
    settings, _ = copy_library(indexed, tmp_path)
    code = f"""
import json, sys
sys.path.insert(0, "tests")
from tinylib import tiny_settings
from pathlib import Path
from search.library import Library
from search.query.searcher import SearchRequest
s = tiny_settings(Path({str(settings.home)!r}), engine="auto")
with Library.for_one_query(s) as lib:
    hits = lib.searcher.search(SearchRequest(text="a red square", add=("2:a dog",), k=6)).hits
    kind = type(lib.searcher.encoder(lib.searcher.serving_model())).__name__
print(json.dumps({{"ids": [h.id for h in hits], "scores": [h.score for h in hits],
                  "torch": "torch" in sys.modules, "open_clip": "open_clip" in sys.modules,
                  "alembic": "alembic" in sys.modules, "kind": kind}}))
"""
    fast = json.loads(run_python(code))
    assert fast["kind"] == "OnnxEncoder"
    assert not (fast["torch"] or fast["open_clip"] or fast["alembic"])
    with Library(settings.with_(engine="torch")) as lib:
        hits = lib.searcher.search(SearchRequest(text="a red square", add=("2:a dog",), k=6)).hits
    assert fast["ids"] == [h.id for h in hits]
    assert np.allclose(fast["scores"], [h.score for h in hits], atol=2e-3)


def test_a_small_index_run_embeds_with_the_export_without_torch(indexed, tmp_path):
    settings, folder = copy_library(indexed, tmp_path)
    more = photos(tmp_path / "more", range(20, 23))
    code = f"""
import json, sys
sys.path.insert(0, "tests")
from tinylib import tiny_settings
from pathlib import Path
from indexer.sync.run import sync
from search.library import Library
s = tiny_settings(Path({str(settings.home)!r}), engine="auto")
with Library(s) as lib:
    r = sync(lib, [{str(more)!r}], progress=False)
print(json.dumps({{"engine": r.engine, "embedded": r.embedded, "torch": "torch" in sys.modules}}))
"""
    out = json.loads(run_python(code))
    assert out == {"engine": "onnx", "embedded": 3, "torch": False}
    # Its vectors are torch's, to cosine 0.999.
    with Library(settings) as lib:
        source = lib.resolve(lib.active_spec())
        torch_encoder = load_encoder(source, "cpu", "fp32")
        for path in sorted(more.glob("*.jpg")):
            image_id = next(
                i for i, m in lib.catalog.images(range(1, 100)).items() if m.path == str(path)
            )
            stored = lib.catalog.vector_of(image_id, source.model_id)
            from PIL import Image

            expected = torch_encoder.encode_images([Image.open(path).convert("RGB")])[0]
            assert float(stored @ expected) >= 0.999


def test_a_large_run_uses_torch_unless_openvino_runs_the_export_in_bf16(
    indexed, tmp_path, monkeypatch
):
    import search.models.onnx.choose as choose
    from search.models.onnx import openvino

    settings, _ = copy_library(indexed, tmp_path)
    monkeypatch.setattr(choose, "SMALL_JOB", 2)
    with Library(settings.with_(precision="fp32")) as lib:  # fp32 asked: no bf16 anywhere
        report = sync(lib, [str(photos(tmp_path / "more", range(30, 33)))], progress=False)
    assert (report.engine, report.embedded) == ("torch", 3)
    bf16 = openvino.installed() and openvino.native_bf16()
    with Library(settings) as lib:
        report = sync(lib, [str(photos(tmp_path / "more2", range(40, 43)))], progress=False)
    assert (report.engine, report.embedded) == ("onnx" if bf16 else "torch", 3)


def _fresh_openvino_state(settings, export) -> None:
    from search.models.onnx import openvino

    shutil.rmtree(settings.cache_dir / "openvino", ignore_errors=True)
    (export.folder / openvino.VERDICTS).unlink(missing_ok=True)


def test_openvino_bf16_agrees_with_torch_and_is_checked_once_per_machine(
    indexed, tmp_path, monkeypatch
):
    from PIL import Image

    from search.models.onnx import openvino

    settings, folder = copy_library(indexed, tmp_path)
    export = store.find(settings.cache_dir, indexed[2].model_id)
    _fresh_openvino_state(settings, export)
    usable = openvino.usable(export, settings.cache_dir)
    # Used exactly where the CPU multiplies bf16 in hardware (this project's CI machine
    # does; elsewhere nothing is measured and ONNX Runtime runs the tower).
    assert usable == (openvino.installed() and openvino.native_bf16())
    verdicts = export.folder / openvino.VERDICTS
    if not usable:
        assert not verdicts.exists()
        return
    verdict = json.loads(verdicts.read_text())[openvino.machine_key()]
    assert verdict["ok"] and verdict["min_cosine"] >= 0.999
    assert any((settings.cache_dir / "openvino").rglob("*.blob"))  # the compiled graph
    monkeypatch.setattr(openvino, "_measure", lambda *a: pytest.fail("measured twice"))
    assert openvino.usable(export, settings.cache_dir)

    fast = OnnxEncoder(export, openvino_cache=settings.cache_dir)
    assert fast.precision == "bf16"
    source = resolve(
        "imgsearch-tiny", "none", models_dir=settings.models_dir, cache_dir=settings.cache_dir
    )
    torch_encoder = load_encoder(source, "cpu", "fp32")
    images = [Image.open(p).convert("RGB") for p in sorted(folder.glob("*.jpg"))]
    cos = (fast.encode_images(images) * torch_encoder.encode_images(images)).sum(axis=1)
    assert cos.min() >= 0.999, cos


def test_openvino_that_disagrees_is_refused_once_and_onnx_runtime_embeds(
    indexed, tmp_path, monkeypatch
):
    from search.models.onnx import openvino

    settings, _ = copy_library(indexed, tmp_path)
    export = store.find(settings.cache_dir, indexed[2].model_id)
    _fresh_openvino_state(settings, export)
    monkeypatch.setattr(openvino, "MIN_COSINE", 1.5)  # nothing can pass
    with Library(settings) as lib:
        report = sync(lib, [str(photos(tmp_path / "more", range(50, 53)))], progress=False)
    assert (report.engine, report.embedded) == ("onnx", 3)  # a small run: ONNX Runtime
    verdicts = export.folder / openvino.VERDICTS
    if not (openvino.installed() and openvino.native_bf16()):
        assert not verdicts.exists()
        return
    assert json.loads(verdicts.read_text())[openvino.machine_key()]["ok"] is False
    monkeypatch.setattr(openvino, "_measure", lambda *a: pytest.fail("measured twice"))
    assert not openvino.usable(export, settings.cache_dir)


def test_other_weights_under_the_same_file_never_use_the_export(tmp_path, tiny_encoder):
    """A weights file replaced in place, a model switched with `use`, a model retrained
    under the same name: each is another model id, and finds no export of the old one."""
    weights = tmp_path / "w.safetensors"
    state = {k: v.float().contiguous() for k, v in tiny_encoder.model.state_dict().items()}
    save_file(state, str(weights))
    settings = tiny_settings(
        tmp_path / "home", engine="auto", model="imgsearch-tiny", pretrained=str(weights)
    )
    folder = photos(tmp_path / "photos", range(4))
    with Library(settings) as lib:
        first = sync(lib, [str(folder)], progress=False)
    assert first.exported
    spec = ModelSpec("imgsearch-tiny", str(weights))
    old = store.find(settings.cache_dir, first.model_id)
    assert store.belongs(old, spec, models_dir=settings.models_dir, cache_dir=settings.cache_dir)

    save_file({k: v * 0.5 for k, v in state.items()}, str(weights))  # new weights, same path
    assert not store.belongs(
        old, spec, models_dir=settings.models_dir, cache_dir=settings.cache_dir
    )
    with Library(settings) as lib:
        assert usable_export(settings, first.model_id, spec, text=True) is None
        # The search of the old vectors refuses the look-alike rather than mixing models.
        from search.errors import ModelError

        with pytest.raises(ModelError, match="changed"):
            lib.searcher.search(SearchRequest(text="a dog"))
        second = sync(lib, [], progress=False)
    assert second.model_id != first.model_id and second.engine == "torch"
    assert second.exported  # its own export, in its own folder
    assert store.folder_for(settings.cache_dir, second.model_id) != old.folder
    assert store.find(settings.cache_dir, first.model_id).folder == old.folder


def save_model(folder: Path, state: dict) -> None:
    """models/NAME as `train` writes it: config, weights, and a sidecar naming the id."""
    folder.mkdir(parents=True, exist_ok=True)
    cfg = json.loads((BUNDLED_CONFIGS / "imgsearch-tiny.json").read_text())
    (folder / OPEN_CLIP_CONFIG).write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": {}}))
    save_file(state, str(folder / WEIGHT_FILES[0]))
    model_id = f"{folder.name}/sha256:{file_digest(folder / WEIGHT_FILES[0])}"
    (folder / SIDECAR).write_text(json.dumps({"model_id": model_id}))


def test_a_retrained_model_under_the_same_name_never_uses_the_old_export(tmp_path, tiny_encoder):
    settings = tiny_settings(tmp_path / "home", engine="auto", model="family", pretrained=None)
    state = {k: v.float().contiguous() for k, v in tiny_encoder.model.state_dict().items()}
    save_model(settings.models_dir / "family", state)
    folder = photos(tmp_path / "photos", range(4))
    with Library(settings) as lib:
        first = sync(lib, [str(folder)], progress=False)
    assert first.exported
    old = store.find(settings.cache_dir, first.model_id)
    spec = ModelSpec("family")

    # Retrained: new weights and, as `train` writes it, a new id in the sidecar.
    save_model(settings.models_dir / "family", {k: v * 0.5 for k, v in state.items()})
    with Library(settings) as lib:
        assert lib.resolve(spec).model_id != first.model_id
    assert not store.belongs(
        old, spec, models_dir=settings.models_dir, cache_dir=settings.cache_dir
    )

    # Weights swapped under a sidecar that still names the old id: the digest the export
    # recorded no longer matches, so the export is not used either.
    sidecar = settings.models_dir / "family" / "imgsearch.json"
    doc = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**doc, "model_id": first.model_id}))
    assert not store.belongs(
        old, spec, models_dir=settings.models_dir, cache_dir=settings.cache_dir
    )
    assert usable_export(settings, first.model_id, spec, text=True) is None


def test_an_export_that_disagrees_with_torch_is_refused_and_not_retried(tmp_path, monkeypatch):
    import search.models.onnx.export as export

    monkeypatch.setattr(export, "MIN_COSINE", 1.5)  # nothing can pass
    settings = tiny_settings(tmp_path / "home", engine="auto")
    folder = photos(tmp_path / "photos", range(3))
    with Library(settings) as lib:
        report = sync(lib, [str(folder)], progress=False)
        assert not report.exported
        assert "refused" in store.refusal(settings.cache_dir, report.model_id)
        assert store.find(settings.cache_dir, report.model_id) is None
        calls = []
        monkeypatch.setattr(export, "export_model", lambda *a, **k: calls.append(1))
        sync(lib, [], progress=False)
        assert calls == []  # the refusal is remembered
        hits = lib.searcher.search(SearchRequest(text="a dog", k=2)).hits  # torch answers
        assert len(hits) == 2
        assert type(lib.searcher.encoder(report.model_id)).__name__ == "ClipEncoder"


def test_engine_torch_never_exports_nor_uses_an_export(indexed, tmp_path):
    settings, _ = copy_library(indexed, tmp_path)
    with Library(settings.with_(engine="torch")) as lib:
        model_id = lib.searcher.serving_model()
        assert type(lib.searcher.encoder(model_id)).__name__ == "ClipEncoder"
    assert usable_export(settings.with_(device="cuda"), model_id, ModelSpec(), text=True) is None


def test_export_folders_are_distinct_per_model_id(tmp_path):
    ids = ["ViT-B-32/sha256:aaa", "ViT-B-32/sha256:aab", "ViT-B-32-sha256-aaa", "a/b:c"]
    assert len({store.folder_for(tmp_path, i) for i in ids}) == len(ids)


def test_a_failing_export_never_fails_the_index_run(tmp_path, monkeypatch, caplog):
    import search.models.onnx.export as export

    def boom(*args, **kwargs):
        raise OSError("read-only file system")

    monkeypatch.setattr(export, "export_model", boom)
    settings = tiny_settings(tmp_path / "home", engine="auto")
    with Library(settings) as lib:
        report = sync(lib, [str(photos(tmp_path / "photos", range(3)))], progress=False)
        assert (report.embedded, report.exported) == (3, False)
        assert len(lib.searcher.search(SearchRequest(text="a dog", k=3)).hits) == 3
    assert "could not prepare" in caplog.text
