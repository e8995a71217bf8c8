"""The device decoding path (issue 5's GPU path), run with torch on the CPU: torchvision's
decode_jpeg takes the same code path minus nvJPEG, so everything around it — routing,
EXIF orientation, resizing, per-file fallback, failure reasons — is checked here."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from imagetree import make_hostile_tree, make_jpeg, random_image
from PIL import Image

from indexer.sync.devicedecode import DeviceJpegDecoder, JpegBytes, read_jpeg, resize_crop, upright
from indexer.sync.run import sync
from search.imageio import _UPRIGHT, read_header
from search.library import Library
from search.models.encoder import prepare_pixels

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from photos import camera_photo  # noqa: E402


@pytest.mark.parametrize("orientation", range(1, 9))
def test_upright_matches_pillow_transposes(orientation):
    img = random_image(orientation, (7, 5))
    expected = img.transpose(_UPRIGHT[orientation]) if orientation != 1 else img
    chw = torch.from_numpy(np.array(img)).permute(2, 0, 1)
    got = upright(chw, orientation).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(got, np.asarray(expected))


@pytest.mark.parametrize("mode", ["shortest", "squash", "longest"])
@pytest.mark.parametrize("size", [(300, 200), (180, 260), (64, 64), (40, 30)])
def test_resize_crop_follows_prepare_pixels(mode, size):
    img = camera_photo(3, size=size)
    expected = prepare_pixels(img, 64, mode).astype(np.int16)
    chw = torch.from_numpy(np.array(img)).permute(2, 0, 1)
    got = resize_crop(chw, 64, mode).numpy().astype(np.int16)
    assert got.shape == expected.shape == (64, 64, 3)
    # Same geometry; resampling kernels differ only by rounding and edge handling.
    assert np.abs(got - expected).mean() < 1.5


def test_read_jpeg_routes_only_what_the_device_decodes(tmp_path):
    tree = make_hostile_tree(tmp_path / "t")
    routed = {
        role: read_jpeg(str(tree.roles[role]), read_header(tree.roles[role]))
        for role in ("jpeg", "grayscale", "exif_rotated", "cmyk", "png")
    }
    assert routed["jpeg"] is not None and routed["grayscale"] is not None
    assert routed["exif_rotated"].orientation == 6
    assert routed["cmyk"] is None and routed["png"] is None
    truncated = next(p for p, why in tree.bad.items() if why == "truncated")
    assert read_jpeg(str(truncated), read_header(truncated)) is None


def test_a_refused_file_does_not_take_its_batch_with_it(tmp_path):
    good = [make_jpeg(tmp_path / f"{i}.jpg", i, (120, 90)) for i in range(3)]
    jpegs = [JpegBytes(p.read_bytes(), 1) for p in good]
    # Valid markers at both ends, garbage between: the decoder itself must refuse it.
    broken = JpegBytes(b"\xff\xd8" + bytes(range(256)) * 4 + b"\xff\xd9", 1)
    decoder = DeviceJpegDecoder("cpu", 32)
    out = decoder([jpegs[0], broken, jpegs[1], jpegs[2]], [0.01] * 4)
    assert out[1] is None
    for p, t in zip(good, [out[0], out[2], out[3]], strict=True):
        with Image.open(p) as im:
            expected = prepare_pixels(im.convert("RGB"), 32)
        assert t.shape == (32, 32, 3) and t.dtype == torch.uint8
        assert np.abs(t.numpy().astype(int) - expected).mean() < 3


def test_device_decode_limits_pixels_held_at_once(monkeypatch):
    calls = []
    decoder = DeviceJpegDecoder("cpu", 32)
    monkeypatch.setattr(decoder, "_decode", lambda js: calls.append(len(js)) or [None] * len(js))
    # 24 photos of 12 MP fit the budget; a 300 MP one is decoded alone.
    decoder([JpegBytes(b"", 1)] * 50 + [JpegBytes(b"", 1)], [12.0] * 50 + [300.0])
    assert calls == [24, 24, 2, 1]


def test_indexing_with_device_decode_matches_the_cpu_path(settings, tmp_path, monkeypatch):
    """The hostile tree through the whole pipeline both ways: the same images indexed, the
    same failures with the same reasons, and each image's vector within cosine 0.9995."""
    import indexer.sync.devicedecode as devicedecode
    import indexer.sync.run

    # Decoding ahead while the model loads takes the CPU path; here every file must not.
    monkeypatch.setattr(indexer.sync.run, "start_prefetch", lambda *args, **kwargs: None)
    on_device = []
    real = devicedecode._decode_jpeg
    monkeypatch.setattr(
        devicedecode, "_decode_jpeg", lambda raw, dev: on_device.extend(raw) or real(raw, dev)
    )
    tree = make_hostile_tree(tmp_path / "photos")
    for i in range(4):  # and some photo-sized JPEGs, one of them stored sideways
        exif = Image.Exif()
        exif[0x0112] = 8 if i == 0 else 1
        camera_photo(i, size=(1200, 900)).save(tree.root / f"cam{i}.jpg", quality=90, exif=exif)
    results = {}
    for how in ("cpu", "device"):
        with Library(settings.with_(home=tmp_path / how, decode=how)) as lib:
            report = sync(lib, [str(tree.root)], progress=False)
            ids, vecs = lib.catalog.vectors(report.model_id)
            paths = {i: m.path for i, m in lib.catalog.images(ids.tolist()).items()}
            failures = {f.path: f.reason for f in lib.catalog.failures()}
            results[how] = report, {paths[i]: v for i, v in zip(ids, vecs, strict=True)}, failures
    (cpu_report, cpu_vecs, cpu_fail), (dev_report, dev_vecs, dev_fail) = results.values()
    assert dev_report.added == cpu_report.added == len(tree.good) + 4
    assert dev_fail == cpu_fail and len(dev_fail) == len(tree.failures)
    assert set(dev_vecs) == set(cpu_vecs)
    # Every plain JPEG went to the device decoder (CMYK, truncated, PNG... did not).
    plain_jpegs = [p for p in tree.good if p.suffix.lower() in (".jpg", ".jpeg")]
    assert len(on_device) == len(plain_jpegs) - 1 + 4  # all but the CMYK one, plus cam*.jpg
    cosines = [float(cpu_vecs[p] @ dev_vecs[p]) for p in cpu_vecs]
    # The random-init model scores a photo turned 90° against itself at 0.993-0.998 and
    # two different photos up to 0.992: only a bar above that catches a wrong orientation
    # (the same pixels both ways measure ≥ 0.9998 here).
    assert min(cosines) >= 0.9995, sorted(cosines)[:3]


@pytest.mark.parametrize("how", ["cpu", "device"])
def test_undecoded_jpegs_in_flight_are_bounded_to_a_batch(settings, tmp_path, monkeypatch, how):
    """Device decoding holds whole files in flight, so it looks ahead one batch (and a
    few), where the CPU path holds two batches of small model inputs."""
    import indexer.sync.run

    for i in range(3):
        make_jpeg(tmp_path / "photos" / f"{i}.jpg", i)
    seen = {}
    real = indexer.sync.run.run_pipeline

    def spy(items, **kwargs):
        seen.update(kwargs)
        return real(items, **kwargs)

    monkeypatch.setattr(indexer.sync.run, "run_pipeline", spy)
    s = settings.with_(decode=how)
    with Library(s) as lib:
        sync(lib, [str(tmp_path / "photos")], progress=False)
    expected = s.batch_size + 4 * s.decode_workers() if how == "device" else None
    assert seen["lookahead"] == expected
