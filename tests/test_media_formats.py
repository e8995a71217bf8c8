"""HEIC, AVIF and camera RAW (DNG): decoded upright with their dates, indexed, thumbnailed;
broken ones and ones whose codec is missing are listed failures that say what to do."""

from __future__ import annotations

import io
from datetime import datetime

import numpy as np
import pytest
from imagetree import make_jpeg
from mediafiles import PREVIEW_GREEN, STORED, make_avif, make_dng, make_heic, truncated, upright_ok
from PIL import Image

from indexer.sync.run import sync
from search import codecs
from search.errors import ImageDecodeError
from search.imageio import jpeg_thumbnail, load_image, read_header
from search.query.searcher import SearchRequest
from webui import create_app

MAKERS = {
    "heic": make_heic,
    "avif": make_avif,
    "dng": make_dng,
    "preview.dng": lambda p, d: make_dng(p, d, preview=True),
}


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_decodes_upright_with_date_and_size(tmp_path, kind):
    path = MAKERS[kind](tmp_path / f"photo.{kind}", "2018:07:06 05:04:03")
    decoded = load_image(path)
    assert upright_ok(decoded.image), kind
    assert (decoded.width, decoded.height) == (STORED[1], STORED[0])  # upright size
    assert decoded.taken_at == datetime(2018, 7, 6, 5, 4, 3)
    header = read_header(path)
    assert (header.width, header.height, header.taken_at) == (64, 96, decoded.taken_at)
    # The pipeline hands over an open file: the name still tells a RAW file apart.
    with open(path, "rb") as f:
        assert upright_ok(load_image(f, name=str(path), min_side=16).image)
    thumb = Image.open(io.BytesIO(jpeg_thumbnail(path, 48, max_megapixels=100)))
    assert thumb.format == "JPEG" and max(thumb.size) == 48 and upright_ok(thumb)


def test_raw_preview_is_used_only_when_large_enough(tmp_path):
    path = make_dng(tmp_path / "cam.dng", "2018:07:06 05:04:03", preview=True)

    def green(image: Image.Image) -> float:
        return float(np.asarray(image, np.float32)[..., 1].mean())

    # The 64 px preview is enough for 32 px: it is what gets decoded (tinted green).
    assert green(load_image(path, min_side=32).image) == pytest.approx(PREVIEW_GREEN, abs=2)
    # Not for 80 px: LibRaw decodes the sensor data, which has hardly any green.
    demosaiced = load_image(path, min_side=80).image
    assert upright_ok(demosaiced) and green(demosaiced) < 80


@pytest.mark.parametrize("kind", ["heic", "avif", "dng"])
def test_broken_files_are_refused_with_a_reason(tmp_path, kind):
    good = MAKERS[kind](tmp_path / f"good.{kind}", "2018:07:06 05:04:03")
    with pytest.raises(ImageDecodeError) as err:
        load_image(truncated(good, tmp_path / f"cut.{kind}"))
    assert "corrupt" in err.value.reason or "not a readable" in err.value.reason
    (tmp_path / f"empty.{kind}").write_bytes(b"")
    with pytest.raises(ImageDecodeError):
        load_image(tmp_path / f"empty.{kind}")


def test_pixel_cap_is_checked_before_decoding(tmp_path):
    for kind in ("heic", "avif", "dng"):
        path = MAKERS[kind](tmp_path / f"p.{kind}", "2018:07:06 05:04:03")
        with pytest.raises(ImageDecodeError, match="too large"):
            load_image(path, max_megapixels=0.001)


def test_heic_renamed_jpg_is_still_read_by_its_brand(tmp_path):
    path = make_heic(tmp_path / "x.heic", "2018:07:06 05:04:03")
    renamed = tmp_path / "x.jpg"
    renamed.write_bytes(path.read_bytes())
    assert upright_ok(load_image(renamed).image)


@pytest.fixture
def phone_library(library, tmp_path):
    root = tmp_path / "phone"
    make_heic(root / "iphone.heic", "2018:07:06 05:04:03")
    make_avif(root / "android.avif", "2021:03:02 10:00:00")
    make_dng(root / "camera.dng", "2022:01:02 03:04:05", preview=True)
    make_jpeg(root / "plain.jpg", 1)
    truncated(make_heic(tmp_path / "ok.heic", "2018:07:06 05:04:03"), root / "cut.heic")
    truncated(make_avif(tmp_path / "ok.avif", "2018:07:06 05:04:03"), root / "cut.avif")
    (root / "notraw.nef").write_bytes(b"II*\x00" + b"\x00" * 200)
    return library, root


def test_index_run_takes_phone_and_camera_formats(phone_library):
    library, root = phone_library
    report = sync(library, [str(root)], progress=False)
    (root_info,) = library.catalog.roots()
    paths = {p: rec.id for p, rec in library.catalog.file_records(root_info.id).items()}
    names = {p.rsplit("/", 1)[1] for p in paths}
    assert names == {"iphone.heic", "android.avif", "camera.dng", "plain.jpg"}
    failures = {f.path.rsplit("/", 1)[1]: f.reason for f in library.catalog.failures()}
    assert set(failures) == {"cut.heic", "cut.avif", "notraw.nef"}
    assert report.failed == 3
    heic = library.catalog.image(paths[str(root / "iphone.heic")])
    assert (heic.width, heic.height, heic.taken_at) == (64, 96, datetime(2018, 7, 6, 5, 4, 3))

    # The capture dates, not the file dates (today, as plain.jpg has), decide --after and
    # --before.
    after = library.searcher.search(
        SearchRequest(
            text="photo", k=10, mode="semantic", after=datetime(2020, 1, 1),
            before=datetime(2023, 1, 1),
        )
    )  # fmt: skip
    assert {h.path.rsplit("/", 1)[1] for h in after.hits} == {"android.avif", "camera.dng"}
    before = library.searcher.search(
        SearchRequest(text="photo", k=10, mode="semantic", before=datetime(2019, 1, 1))
    )
    assert {h.path.rsplit("/", 1)[1] for h in before.hits} == {"iphone.heic"}

    # Served: an upright JPEG thumbnail; the original as it is, with its type.
    client = create_app(library=library).test_client()
    for name in ("iphone.heic", "android.avif", "camera.dng"):
        thumb = client.get(f"/thumbs/{paths[str(root / name)]}")
        assert thumb.status_code == 200 and thumb.mimetype == "image/jpeg"
        assert upright_ok(Image.open(io.BytesIO(thumb.data))), name
    original = client.get(f"/files/{paths[str(root / 'iphone.heic')]}")
    assert original.mimetype == "image/heic"
    assert original.data == (root / "iphone.heic").read_bytes()
    original.close()


def test_missing_codec_is_a_reason_and_installing_it_is_enough(library, tmp_path, monkeypatch):
    root = tmp_path / "phone"
    make_heic(root / "a.heic", "2018:07:06 05:04:03")
    make_dng(root / "b.dng", "2018:07:06 05:04:03")
    make_jpeg(root / "c.jpg", 1)
    monkeypatch.setattr(codecs, "heif_available", lambda: False)
    monkeypatch.setattr(codecs, "rawpy_module", lambda: None)
    sync(library, [str(root)], progress=False)
    failures = {f.path.rsplit("/", 1)[1]: f.reason for f in library.catalog.failures()}
    assert "install imgsearch[heif]" in failures["a.heic"]
    assert "install imgsearch[raw]" in failures["b.dng"]
    assert library.catalog.image_count() == 1

    monkeypatch.undo()  # the extras are installed now; the files have not changed
    report = sync(library, [str(root)], progress=False)
    assert library.catalog.image_count() == 3 and library.catalog.failures() == []
    assert report.failed == 0
