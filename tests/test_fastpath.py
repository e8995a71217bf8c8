"""The fast indexing path (JPEG draft decode, uint8 resize, bf16 where the CPU has it)
embeds like the plain path (full decode, open_clip's own transform, fp32): cosine ≥ 0.9995.
A random-init model scores a photo turned 90° against itself at 0.993-0.998, so a lower
bar would let a wrong orientation through (the same pixels both ways measure ≥ 0.9999)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from search.imageio import load_image
from search.models.encoder import load_encoder
from search.models.spec import resolve

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from photos import camera_photo  # noqa: E402


@pytest.mark.parametrize("arch", ["ViT-B-32-256", "imgsearch-tiny"])
def test_fast_path_matches_plain_path(tmp_path, arch):
    import open_clip

    source = resolve(arch, "none", models_dir=tmp_path, cache_dir=tmp_path)
    fast = load_encoder(source, "cpu", "auto")
    plain = load_encoder(source, "cpu", "fp32")
    _, _, transform = open_clip.create_model_and_transforms(arch)
    paths = []
    for i in range(4):
        path = tmp_path / f"{i}.jpg"
        img = camera_photo(i, size=(2000, 1500))
        if i == 3:  # an EXIF-rotated photo takes the same path
            exif = Image.Exif()
            exif[0x0112] = 6
            img.save(path, "JPEG", quality=92, exif=exif)
        else:
            img.save(path, "JPEG", quality=92)
        paths.append(path)

    decoded = [load_image(p, min_side=fast.image_size) for p in paths]
    assert all(max(d.image.size) < 2000 for d in decoded)  # draft mode really kicked in
    fast_vecs = fast.encode_pixels(np.stack([fast.prepare(d.image) for d in decoded]))

    with torch.inference_mode():
        batch = []
        for p in paths:
            with Image.open(p) as im:
                batch.append(transform(ImageOps.exif_transpose(im).convert("RGB")))
        ref = plain.model.encode_image(torch.stack(batch)).float().numpy()
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)

    cosines = (fast_vecs * ref).sum(axis=1)
    print(f"{arch}: cosine fast vs plain min {cosines.min():.5f}")
    assert cosines.min() >= 0.9995, cosines
