"""Model resolution (DESIGN.md "Models"), safe weight loading (promise 7) and the encoder."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from search.errors import ModelError
from search.models.encoder import load_encoder, prepare_pixels
from search.models.spec import BUNDLED_CONFIGS, ModelSpec, register_bundled_configs, resolve
from search.settings import DEFAULT_MODEL, DEFAULT_PRETRAINED

TINY = "imgsearch-tiny"
TEXTS = ["a photo of a dog", "a red bicycle", "x"]
TINY_CFG = json.loads((BUNDLED_CONFIGS / f"{TINY}.json").read_text())


def dirs(base: Path) -> dict[str, Path]:
    return {"models_dir": base / "models", "cache_dir": base / "cache"}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Payload:
    """Unpickling this runs code: it creates a directory at `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


# -- the default model without weights fails fast ----------------------------------------------
def test_default_model_offline_without_cached_weights_fails_fast(tmp_path) -> None:
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    import open_clip  # noqa: F401 - a cold import of torch alone takes seconds; not timed here

    start = time.perf_counter()
    with pytest.raises(ModelError) as info:
        resolve(None, None, **dirs(tmp_path))
    assert time.perf_counter() - start < 5
    msg = str(info.value)
    assert "--pretrained FILE" in msg
    assert str(tmp_path / "cache") in msg
    # The explicit spelling of the default behaves the same.
    with pytest.raises(ModelError, match="--pretrained"):
        resolve(DEFAULT_MODEL, DEFAULT_PRETRAINED, **dirs(tmp_path))


def test_default_model_without_network_fails_fast_and_names_pretrained_file(
    tmp_path, monkeypatch
) -> None:
    import open_clip  # noqa: F401 - imported before timing, as above
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    tried: list[tuple] = []

    def no_network(address, *args, **kwargs):
        tried.append(address)
        raise OSError(101, "Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", no_network)
    start = time.perf_counter()
    with pytest.raises(ModelError) as info:
        resolve(None, None, **dirs(tmp_path))
    assert time.perf_counter() - start < 5
    msg = str(info.value)
    assert "--pretrained FILE" in msg
    assert "cannot reach huggingface.co" in msg and "Network is unreachable" in msg
    assert tried and tried[0][0] == "huggingface.co"


def test_hf_hub_model_offline_fails_fast(tmp_path) -> None:
    start = time.perf_counter()
    with pytest.raises(ModelError, match="offline mode"):
        resolve("hf-hub:someone/some-clip", None, **dirs(tmp_path))
    assert time.perf_counter() - start < 5


def test_default_weights_in_the_cache_resolve_without_network(tmp_path, monkeypatch) -> None:
    """Weights downloaded once into cache/ are found there (offline, no socket touched)."""
    import open_clip

    def no_network(*args, **kwargs):
        raise AssertionError("resolve touched the network although the weights are cached")

    monkeypatch.setattr(socket, "create_connection", no_network)
    hub = open_clip.get_pretrained_cfg(DEFAULT_MODEL, DEFAULT_PRETRAINED)["hf_hub"]
    repo = hub.rstrip("/").split("/")
    repo_dir = tmp_path / "cache" / f"models--{repo[0]}--{repo[1]}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    snap = repo_dir / "snapshots" / commit
    snap.mkdir(parents=True)
    (snap / "open_clip_model.safetensors").write_bytes(b"placeholder weights")
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)

    source = resolve(None, None, **dirs(tmp_path))
    assert source.weights is not None
    assert source.weights.read_bytes() == b"placeholder weights"
    assert source.model_id == f"{DEFAULT_MODEL}/{DEFAULT_PRETRAINED}"
    assert source.spec == ModelSpec(DEFAULT_MODEL, DEFAULT_PRETRAINED)
    assert source.preprocess["resize_mode"] == "shortest"


# -- bad specs -------------------------------------------------------------------------------
def test_unknown_architecture_is_a_model_error(tmp_path) -> None:
    with pytest.raises(ModelError, match="unknown model 'no-such-arch'"):
        resolve("no-such-arch", "none", **dirs(tmp_path))


def test_unknown_pretrained_tag_lists_the_known_tags(tmp_path) -> None:
    with pytest.raises(ModelError) as info:
        resolve(DEFAULT_MODEL, "not_a_tag", **dirs(tmp_path))
    msg = str(info.value)
    assert "not_a_tag" in msg and DEFAULT_PRETRAINED in msg and "openai" in msg
    with pytest.raises(ModelError, match="known: none"):
        resolve(TINY, "not_a_tag", **dirs(tmp_path))
    # A path to a file that does not exist is not silently random init either.
    with pytest.raises(ModelError):
        resolve(TINY, str(tmp_path / "missing.safetensors"), **dirs(tmp_path))


def test_missing_or_invalid_config_json_is_a_model_error(tmp_path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        resolve(str(tmp_path / "nope.json"), None, **dirs(tmp_path))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"embed_dim": 8}))
    with pytest.raises(ModelError, match="not an open_clip model config"):
        resolve(str(bad), None, **dirs(tmp_path))
    bad.write_text("{ not json")
    with pytest.raises(ModelError, match="not an open_clip model config"):
        resolve(str(bad), None, **dirs(tmp_path))


# -- random init -----------------------------------------------------------------------------
def test_random_init_is_deterministic_and_model_id_stable(tmp_path) -> None:
    import torch

    a = resolve(TINY, "none", **dirs(tmp_path))
    b = resolve(TINY, "random", **dirs(tmp_path / "other"))
    c = resolve(TINY, None, **dirs(tmp_path))  # no tags: random init
    assert a.model_id == b.model_id == c.model_id
    assert a.model_id.startswith(f"{TINY}/random:")
    assert a.weights is None and a.seed is not None

    torch.manual_seed(1234)
    expected_next = torch.rand(3)
    torch.manual_seed(1234)
    enc_a = load_encoder(a, "cpu")
    # Loading (seeded) does not disturb the caller's random stream.
    assert torch.equal(torch.rand(3), expected_next)
    enc_b = load_encoder(b, "cpu")
    np.testing.assert_array_equal(enc_a.encode_texts(TEXTS), enc_b.encode_texts(TEXTS))
    assert enc_a.model_id == enc_b.model_id == a.model_id


# -- a custom architecture from a config file --------------------------------------------------
def test_custom_config_json_loads_with_its_own_dim(tmp_path) -> None:
    cfg = json.loads(json.dumps(TINY_CFG))
    cfg["embed_dim"] = 32
    path = tmp_path / "my-arch.json"
    path.write_text(json.dumps(cfg))

    source = resolve(str(path), None, **dirs(tmp_path))
    assert source.model_id.startswith("custom-")
    assert source.spec == ModelSpec(str(path.resolve()))
    enc = load_encoder(source, "cpu")
    assert enc.dim == 32
    assert enc.encode_texts(TEXTS).shape == (3, 32)
    # Same content → same id (even from another copy), different content → different id.
    copy = tmp_path / "copy.json"
    copy.write_text(json.dumps(cfg, indent=2))
    assert resolve(str(copy), None, **dirs(tmp_path)).model_id == source.model_id
    assert resolve(str(copy), "none", **dirs(tmp_path / "x")).model_id == source.model_id
    tiny_copy = tmp_path / "tiny-copy.json"
    tiny_copy.write_text(json.dumps(TINY_CFG))
    assert resolve(str(tiny_copy), None, **dirs(tmp_path)).model_id != source.model_id
    # A saved open_clip_config.json layout ({"model_cfg": ...}) works as a config file too.
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": {}}))
    assert resolve(str(wrapped), None, **dirs(tmp_path)).model_id == source.model_id


def test_custom_config_with_weights_file(tmp_path, tiny_encoder) -> None:
    from safetensors.torch import save_file

    weights = tmp_path / "w.safetensors"
    save_file(tiny_encoder.model.state_dict(), str(weights))
    cfg_path = tmp_path / "arch.json"
    cfg_path.write_text(json.dumps(TINY_CFG))
    source = resolve(str(cfg_path), str(weights), **dirs(tmp_path))
    assert source.model_id.startswith("custom-") and "/sha256:" in source.model_id
    enc = load_encoder(source, "cpu")
    np.testing.assert_allclose(enc.encode_texts(TEXTS), tiny_encoder.encode_texts(TEXTS), atol=1e-6)
    with pytest.raises(ModelError, match="no such weights file"):
        resolve(str(cfg_path), str(tmp_path / "missing.pt"), **dirs(tmp_path))


# -- weights files (promise 7) -----------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["safetensors", "pt"])
def test_pretrained_weights_file_loads_and_is_fingerprinted(tmp_path, tiny_encoder, fmt) -> None:
    import torch
    from safetensors.torch import save_file

    state = {k: v.detach().clone().contiguous() for k, v in tiny_encoder.model.state_dict().items()}
    path = tmp_path / f"weights.{fmt}"
    if fmt == "safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)

    source = resolve(TINY, str(path), **dirs(tmp_path))
    assert source.weights == path.resolve()
    assert source.model_id == f"{TINY}/sha256:{sha256(path)[:12]}"
    assert "sha256:" in source.model_id
    enc = load_encoder(source, "cpu")
    assert enc.model_id == source.model_id
    np.testing.assert_allclose(enc.encode_texts(TEXTS), tiny_encoder.encode_texts(TEXTS), atol=1e-6)
    pixels = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    np.testing.assert_allclose(
        enc.encode_pixels(pixels), tiny_encoder.encode_pixels(pixels), atol=1e-6
    )


def test_different_weights_get_a_different_model_id(tmp_path, tiny_encoder) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().clone() for k, v in tiny_encoder.model.state_dict().items()}
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_file(state, str(a))
    state["logit_scale"] = state["logit_scale"] + 1
    save_file(state, str(b))
    ida = resolve(TINY, str(a), **dirs(tmp_path)).model_id
    idb = resolve(TINY, str(b), **dirs(tmp_path)).model_id
    assert ida != idb


def test_weights_of_the_wrong_shape_are_a_model_error(tmp_path) -> None:
    import torch

    path = tmp_path / "wrong.pt"
    torch.save({"visual.conv1.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(ModelError, match="cannot load model"):
        load_encoder(resolve(TINY, str(path), **dirs(tmp_path)), "cpu")


def test_pickled_code_in_a_weights_file_is_never_executed(tmp_path) -> None:
    import torch

    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": Payload(marker)}, evil)
    assert not marker.exists()

    source = resolve(TINY, str(evil), **dirs(tmp_path))
    with pytest.raises(ModelError):
        load_encoder(source, "cpu")
    assert not marker.exists()

    # The same file as a saved-model directory's weights: refused too.
    saved = tmp_path / "models" / "evil-model"
    saved.mkdir(parents=True)
    (saved / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CFG}))
    (saved / "open_clip_pytorch_model.bin").write_bytes(evil.read_bytes())
    with pytest.raises(ModelError):
        load_encoder(resolve("evil-model", None, **dirs(tmp_path)), "cpu")
    assert not marker.exists()

    # The payload is real: an unsafe load would have run it.
    torch.load(evil, weights_only=False)
    assert marker.is_dir()


# -- saved-model directories -------------------------------------------------------------------
def saved_model(folder: Path, tiny_encoder, model_id: str | None = "mine@abc") -> Path:
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    (folder / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": TINY_CFG, "preprocess_cfg": {}})
    )
    save_file(tiny_encoder.model.state_dict(), str(folder / "open_clip_model.safetensors"))
    if model_id is not None:
        (folder / "imgsearch.json").write_text(json.dumps({"model_id": model_id}))
    return folder


def test_saved_model_directory_by_path_and_by_name(tmp_path, tiny_encoder) -> None:
    folder = saved_model(tmp_path / "models" / "mine", tiny_encoder)
    by_name = resolve("mine", None, **dirs(tmp_path))
    by_path = resolve(str(folder), None, **dirs(tmp_path / "elsewhere"))
    assert by_name.model_id == by_path.model_id == "mine@abc"
    assert by_name.spec == ModelSpec("mine")
    assert by_path.spec == ModelSpec(str(folder.resolve()))
    # The spec stored with the vectors resolves to the same source again.
    assert resolve(**by_name.spec.as_dict(), **dirs(tmp_path)).model_id == "mine@abc"

    enc = load_encoder(by_name, "cpu")
    assert enc.model_id == "mine@abc" and enc.dim == tiny_encoder.dim
    np.testing.assert_allclose(enc.encode_texts(TEXTS), tiny_encoder.encode_texts(TEXTS), atol=1e-6)
    # An unknown name that is not under models/ is not a saved model.
    with pytest.raises(ModelError):
        resolve("not-saved", None, **dirs(tmp_path))


def test_saved_model_without_sidecar_is_named_by_its_weights(tmp_path, tiny_encoder) -> None:
    folder = saved_model(tmp_path / "models" / "plain", tiny_encoder, model_id=None)
    source = resolve("plain", None, **dirs(tmp_path))
    digest = sha256(folder / "open_clip_model.safetensors")[:12]
    assert source.model_id == f"plain/sha256:{digest}"


def test_directory_without_config_or_weights_is_a_model_error(tmp_path, tiny_encoder) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelError, match="not a saved model"):
        resolve(str(empty), None, **dirs(tmp_path))
    folder = saved_model(tmp_path / "noweights", tiny_encoder)
    (folder / "open_clip_model.safetensors").unlink()
    with pytest.raises(ModelError, match="no weights"):
        resolve(str(folder), None, **dirs(tmp_path))


def test_corrupt_sidecar_is_a_model_error(tmp_path, tiny_encoder) -> None:
    folder = saved_model(tmp_path / "models" / "broken", tiny_encoder)
    (folder / "imgsearch.json").write_text("{ truncated")
    with pytest.raises(ModelError):
        resolve("broken", None, **dirs(tmp_path))


# -- encoder outputs ---------------------------------------------------------------------------
def test_encoder_outputs_are_unit_float32(tiny_encoder) -> None:
    dim = tiny_encoder.dim
    assert dim == TINY_CFG["embed_dim"]
    assert tiny_encoder.image_size == TINY_CFG["vision_cfg"]["image_size"]
    texts = tiny_encoder.encode_texts(TEXTS)
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    imgs = [
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        for w, h in [(97, 61), (64, 64), (40, 300)]
    ]
    for out, n in (
        (texts, 3),
        (tiny_encoder.encode_pixels(pixels), 4),
        (tiny_encoder.encode_images(imgs), 3),
    ):
        assert out.dtype == np.float32
        assert out.shape == (n, dim)
        np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    # Different inputs give different vectors; the same input the same vector.
    assert not np.allclose(texts[0], texts[1])
    np.testing.assert_array_equal(tiny_encoder.encode_texts(TEXTS[:1])[0], texts[0])
    # encode_images is prepare + encode_pixels.
    manual = tiny_encoder.encode_pixels(np.stack([tiny_encoder.prepare(im) for im in imgs]))
    np.testing.assert_allclose(tiny_encoder.encode_images(imgs), manual, atol=1e-6)


@pytest.mark.parametrize("size", [(97, 61), (61, 97), (64, 64), (300, 65), (33, 40), (1001, 17)])
def test_prepare_pixels_matches_open_clip_eval_preprocess(size) -> None:
    import open_clip

    register_bundled_configs()
    _, _, preprocess = open_clip.create_model_and_transforms(TINY)
    mean = np.array(open_clip.OPENAI_DATASET_MEAN, np.float32)
    std = np.array(open_clip.OPENAI_DATASET_STD, np.float32)
    rng = np.random.default_rng(size[0] * 7 + size[1])
    image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))

    pixels = prepare_pixels(image, 64)
    assert pixels.dtype == np.uint8 and pixels.shape == (64, 64, 3)
    mine = ((pixels.astype(np.float32) / 255 - mean) / std).transpose(2, 0, 1)
    theirs = preprocess(image).numpy()
    np.testing.assert_allclose(mine, theirs, atol=1e-5)


@pytest.mark.parametrize("mode", ["longest", "squash"])
def test_prepare_pixels_other_resize_modes_match_open_clip(mode) -> None:
    import open_clip

    transform = open_clip.image_transform(64, is_train=False, resize_mode=mode)
    mean = np.array(open_clip.OPENAI_DATASET_MEAN, np.float32)
    std = np.array(open_clip.OPENAI_DATASET_STD, np.float32)
    rng = np.random.default_rng(3)
    for w, h in [(97, 61), (61, 97), (300, 65)]:
        image = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        pixels = prepare_pixels(image, 64, mode)
        mine = ((pixels.astype(np.float32) / 255 - mean) / std).transpose(2, 0, 1)
        np.testing.assert_allclose(mine, transform(image).numpy(), atol=1e-5)


def test_encoder_uses_pretrained_tag_preprocess_overrides(tmp_path, tiny_encoder) -> None:
    """A tag's mean/std override the model's: the source's preprocess dict reaches the encoder."""
    from dataclasses import replace

    from search.models.encoder import ClipEncoder

    source = replace(
        tiny_encoder.source,
        preprocess={"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "resize_mode": "squash"},
    )
    enc = ClipEncoder(
        tiny_encoder.model, tiny_encoder.tokenizer, source, "cpu", tiny_encoder.precision
    )
    assert enc.resize_mode == "squash"
    image = Image.fromarray(np.full((30, 90, 3), 200, np.uint8))
    assert enc.prepare(image).shape == (64, 64, 3)
    px = np.full((1, 64, 64, 3), 128, np.uint8)
    assert not np.allclose(enc.encode_pixels(px), tiny_encoder.encode_pixels(px))


def test_weights_are_hashed_once_per_file_version(tmp_path, monkeypatch):
    import search.models.spec as modelspec

    path = tmp_path / "w.bin"
    path.write_bytes(b"a" * 5000)
    cache = tmp_path / "cache"
    first = modelspec.weights_digest(path, cache)
    assert first == sha256(path)[:12]
    hashed = []
    real = modelspec.file_digest
    monkeypatch.setattr(modelspec, "file_digest", lambda p: hashed.append(p) or real(p))
    assert modelspec.weights_digest(path, cache) == first and hashed == []
    # Same size, new content (a fine-tune saved over the old file): hashed again.
    path.write_bytes(b"b" * 5000)
    os.utime(path, ns=(1, 1))
    assert modelspec.weights_digest(path, cache) == sha256(path)[:12] != first
    assert len(hashed) == 1
    assert len(json.loads((cache / modelspec.DIGEST_CACHE).read_text())) == 1
    # Copied over with its times kept (cp -p): same size and mtime, but a new ctime.
    time.sleep(0.01)
    path.write_bytes(b"c" * 5000)
    os.utime(path, ns=(1, 1))
    assert modelspec.weights_digest(path, cache) == sha256(path)[:12]
    assert len(hashed) == 2


def test_models_built_in_two_threads_at_once_are_each_right(tmp_path, tiny_encoder):
    """A checkpointed build skips random init process-wide for a moment; a random-init
    build in another thread at that moment must still get its seeded weights."""
    import threading

    from safetensors.torch import save_file

    from search.models.encoder import build_model

    state = {k: v.detach().clone().contiguous() for k, v in tiny_encoder.model.state_dict().items()}
    file = tmp_path / "w.safetensors"
    save_file(state, str(file))
    random_src = resolve(TINY, "none", **dirs(tmp_path))
    file_src = resolve(TINY, str(file), **dirs(tmp_path))
    expected = build_model(random_src)[0].state_dict()
    results: dict = {}

    def build(name, source):
        results[name] = build_model(source)[0].state_dict()

    for round_ in range(3):
        threads = [
            threading.Thread(target=build, args=(f"file{round_}", file_src)),
            threading.Thread(target=build, args=(f"random{round_}", random_src)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for key, value in expected.items():
            got_random, got_file = results[f"random{round_}"][key], results[f"file{round_}"][key]
            np.testing.assert_array_equal(got_random.float().numpy(), value.float().numpy())
            np.testing.assert_array_equal(got_file.float().numpy(), state[key].float().numpy())


@pytest.mark.parametrize(
    "files",
    [
        ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"],
        ["open_clip_pytorch_model.bin", "open_clip_pytorch_model.safetensors"],
        ["model.safetensors", "pytorch_model.bin"],
        ["epoch_3.pt", "zeta.bin", "alpha.safetensors", "beta.safetensors"],
        ["zeta.bin", "alpha.pth"],
        ["notes.txt"],
    ],
)
def test_a_model_folder_is_fingerprinted_by_the_file_open_clip_loads(tmp_path, files):
    from open_clip.factory import _find_checkpoint_in_dir

    from search.models.spec import checkpoint_in_dir

    for name in files:
        (tmp_path / name).write_bytes(name.encode())
    ours = checkpoint_in_dir(tmp_path)
    theirs = _find_checkpoint_in_dir(tmp_path)
    assert (str(ours) if ours else None) == theirs


def test_a_truncated_weights_file_is_one_line_and_the_serving_model_stays(
    tmp_path, tiny_encoder
) -> None:
    """RELIABILITY 36: a saved model whose safetensors file was cut short (a copy that
    stopped) is refused in one line wherever it is named; the library keeps searching
    with the model it had."""
    from imagetree import make_jpeg
    from test_cli import TINY as TINY_ARGS
    from test_cli import run

    home = tmp_path / "home"
    for i in range(6):
        make_jpeg(tmp_path / "photos" / f"{i}.jpg", i)
    run("index", tmp_path / "photos", *TINY_ARGS, home=home)
    before = json.loads(run("search", "a photo", "--json", home=home).stdout)
    broken = saved_model(home / "models" / "broken", tiny_encoder, model_id=None)
    weights = broken / "open_clip_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])

    for args in (["use", "broken"], ["index", "--model", "broken", "--device", "cpu"]):
        proc = run(*args, home=home, check=False)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode != 0 and len(lines) == 1, proc.stderr
        assert "Traceback" not in proc.stderr and "broken" in lines[0], lines
    after = json.loads(run("search", "a photo", "--json", home=home).stdout)
    assert after["model_id"] == before["model_id"]
    assert [h["id"] for h in after["results"]] == [h["id"] for h in before["results"]]


def test_no_unsafe_deserialisation_in_the_code() -> None:
    """RELIABILITY 36, the code scan: every torch.load passes weights_only=True, and
    nothing calls pickle's loaders (a weights file is user-writable input)."""
    import ast

    repo = Path(__file__).resolve().parent.parent
    found = []
    for path in sorted(repo.glob("*/**/*.py")):
        if path.parts[len(repo.parts)] not in ("search", "indexer", "webui", "bench"):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            owner = node.func.value
            name = f"{owner.id if isinstance(owner, ast.Name) else '?'}.{node.func.attr}"
            safe = any(
                k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value
                for k in node.keywords
            )
            if (name == "torch.load" and not safe) or name in ("pickle.load", "pickle.loads"):
                found.append(f"{path.relative_to(repo)}:{node.lineno}: {name}")
    assert found == []
    # The scan sees the loads it must: the checkpoint and weights readers.
    assert "torch.load(" in (repo / "indexer" / "training" / "checkpoint.py").read_text()
