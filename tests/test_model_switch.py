"""Promise 5, "never mix models", through the real console script: two models of the same
dimension in one library. Each ranking is checked against vectors computed here, apart
from the program, with a freshly loaded copy of the model it claims to use."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from imagetree import make_jpeg
from PIL import Image
from safetensors.torch import save_file
from test_cli import run

from search.models.encoder import build_model, load_encoder
from search.models.spec import resolve

QUERY = "a red square on a blue field"
ENV = {"IMGSEARCH_ENGINE": "torch"}  # no export: the promise is the same on every engine


def weights(path, seed: int):
    """imgsearch-tiny from another random init: the same architecture and dimension."""
    source = resolve("imgsearch-tiny", "none", models_dir=path.parent, cache_dir=path.parent)
    torch.manual_seed(seed)
    model, _ = build_model(source, "cpu")
    for p in model.parameters():  # a visibly different model, not the same init
        p.data.add_(torch.randn_like(p) * 0.05)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def reference(path, folder, tmp_path) -> dict[str, float]:
    """path → cosine to QUERY, from the model in `path` loaded afresh here."""
    source = resolve("imgsearch-tiny", str(path), models_dir=tmp_path, cache_dir=tmp_path)
    encoder = load_encoder(source, "cpu", "fp32")
    photos = sorted(folder.glob("*.jpg"))
    images = encoder.encode_images([Image.open(p).convert("RGB") for p in photos])
    query = encoder.encode_texts([QUERY])[0]
    return {str(p): float(v @ query) for p, v in zip(photos, images, strict=True)}


def search(home) -> dict[str, float]:
    out = json.loads(run("search", QUERY, "-k", "50", "--json", home=home, env=ENV).stdout)
    return {h["path"]: h["score"] for h in out["results"]}


def assert_ranks_like(got: dict[str, float], expected: dict[str, float]) -> None:
    assert set(got) == set(expected)
    order = sorted(expected, key=expected.get, reverse=True)
    assert np.allclose([got[p] for p in order], [expected[p] for p in order], atol=2e-3)


@pytest.mark.slow
def test_a_switched_model_serves_alone_once_its_index_is_complete(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(12):
        make_jpeg(folder / f"{i}.jpg", i)
    a, b = weights(tmp_path / "a.safetensors", 1), weights(tmp_path / "b.safetensors", 2)
    home = tmp_path / "home"
    ref_a, ref_b = reference(a, folder, tmp_path), reference(b, folder, tmp_path)
    # Two models that rank these photos differently, else the test could not tell.
    assert sorted(ref_a, key=ref_a.get) != sorted(ref_b, key=ref_b.get)

    model_a = ["--model", "imgsearch-tiny", "--pretrained", a, "--device", "cpu"]
    run("index", folder, *model_a, "--quiet", home=home, env=ENV)
    assert_ranks_like(search(home), ref_a)

    run("use", "imgsearch-tiny", "--pretrained", b, home=home, env=ENV)
    assert_ranks_like(search(home), ref_a)  # until B's index is complete, A answers

    run("index", "--quiet", home=home, env=ENV)  # embeds every image with B
    assert_ranks_like(search(home), ref_b)
    status = json.loads(run("status", "--json", home=home, env=ENV).stdout)
    assert status["serving_model"] == status["index"]["model_id"] != ""
    assert status["index"]["count"] == 12  # B's vectors only, none of A's beside them
