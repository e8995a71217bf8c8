"""Decoding of hostile and unusual image files (all generated here, no fixtures on disk)."""

from __future__ import annotations

import io
import os
import time
import warnings
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from imagetree import (
    DATETIME_ORIGINAL_TAG,
    EXIF_IFD_TAG,
    ORIENTATION_TAG,
    huge_png_bytes,
    make_hostile_tree,
    random_image,
)
from PIL import Image, ImageDraw, ImageFile, ImageOps

from search.errors import ImageDecodeError
from search.imageio import IMAGE_EXTENSIONS, DecodedImage, load_image, read_header

DATETIME_TAG = 306
RED = (255, 0, 0)


def save(img: Image.Image, path: Path, fmt: str | None = None, **kw) -> Path:
    img.save(path, fmt, **kw)
    return path


def close_to(a: tuple[int, ...], b: tuple[int, ...], tol: int = 12) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


def header_info(source, **kw) -> tuple:
    """Upright (width, height, taken_at) as the header says, without decoding pixels."""
    header = read_header(source, **kw)
    return header.width, header.height, header.taken_at


def reason_of(source, **kw) -> str:
    with pytest.raises(ImageDecodeError) as info:
        load_image(source, **kw)
    return info.value.reason


def half_red(size: tuple[int, int]) -> Image.Image:
    """Red left half, blue right half: shows where the left edge ended up."""
    img = Image.new("RGB", size, (0, 0, 255))
    ImageDraw.Draw(img).rectangle((0, 0, size[0] // 2 - 1, size[1] - 1), fill=RED)
    return img


def test_extensions() -> None:
    pillow = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
    phone = {".heic", ".heif", ".avif"}
    raw = {".dng", ".cr2", ".cr3", ".nef", ".arw", ".orf", ".rw2", ".raf"}
    assert pillow | phone | raw == IMAGE_EXTENSIONS
    assert all(e == e.lower() and e.startswith(".") for e in IMAGE_EXTENSIONS)


@pytest.mark.parametrize(
    ("fmt", "suffix", "tol", "kw"),
    [
        ("JPEG", ".jpg", 12, {"quality": 95}),
        ("PNG", ".png", 0, {}),
        ("WEBP", ".webp", 0, {"lossless": True}),
        ("GIF", ".gif", 0, {}),
        ("BMP", ".bmp", 0, {}),
        ("TIFF", ".tif", 0, {}),
    ],
)
def test_roundtrip(tmp_path: Path, fmt: str, suffix: str, tol: int, kw: dict) -> None:
    src = half_red((64, 48))
    path = save(src, tmp_path / f"img{suffix}", fmt, **kw)
    decoded = load_image(path)
    assert isinstance(decoded, DecodedImage)
    assert (decoded.image.mode, decoded.image.size) == ("RGB", (64, 48))
    assert (decoded.width, decoded.height, decoded.taken_at) == (64, 48, None)
    assert close_to(decoded.image.getpixel((8, 24)), RED, tol)
    assert close_to(decoded.image.getpixel((56, 24)), (0, 0, 255), tol)
    assert header_info(path) == (64, 48, None)


def test_result_is_detached_from_file(tmp_path: Path) -> None:
    path = save(half_red((32, 32)), tmp_path / "a.png")
    decoded = load_image(path)
    path.unlink()
    assert not isinstance(decoded.image, ImageFile.ImageFile)
    assert decoded.image.getpixel((0, 0)) == RED


def test_file_object(tmp_path: Path) -> None:
    buf = io.BytesIO()
    half_red((40, 30)).save(buf, "JPEG")
    buf.seek(7)  # the position does not matter: the whole stream is read
    decoded = load_image(buf)
    assert (decoded.width, decoded.height) == (40, 30)
    assert not buf.closed  # the caller's object stays the caller's
    assert header_info(buf)[:2] == (40, 30)
    with open(save(half_red((40, 30)), tmp_path / "b.png"), "rb") as f:
        assert load_image(f).image.getpixel((0, 0)) == RED


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animation_uses_first_frame(tmp_path: Path, fmt: str) -> None:
    frames = [Image.new("RGB", (16, 16), c) for c in (RED, (0, 0, 255))]
    path = tmp_path / f"anim.{fmt.lower()}"
    frames[0].save(path, fmt, save_all=True, append_images=frames[1:], duration=50, lossless=True)
    assert load_image(path).image.getpixel((8, 8)) == RED


def test_exif_orientation_6_is_upright(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = 6  # stored landscape, shown rotated 90 degrees clockwise
    path = save(half_red((60, 40)), tmp_path / "r.jpg", exif=exif, quality=95)
    decoded = load_image(path)
    assert decoded.image.size == (40, 60)
    assert (decoded.width, decoded.height) == (40, 60)
    # A clockwise turn moves the stored left half to the top.
    assert close_to(decoded.image.getpixel((20, 10)), RED)
    assert close_to(decoded.image.getpixel((20, 50)), (0, 0, 255))
    assert header_info(path) == (40, 60, None)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("orientation", range(10))  # 0 and 9 are invalid: ignored
def test_orientations_match_exif_transpose(tmp_path: Path, fmt: str, orientation: int) -> None:
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    path = save(random_image(orientation, (48, 32)), tmp_path / "o", fmt, exif=exif)
    with Image.open(path) as img:
        expected = ImageOps.exif_transpose(img).convert("RGB")
    decoded = load_image(path)
    assert decoded.image.tobytes() == expected.tobytes()
    assert (decoded.width, decoded.height) == expected.size


@pytest.mark.parametrize(
    ("original", "plain", "expected"),
    [
        ("2021:05:03 10:11:12", "2022:01:01 00:00:00", datetime(2021, 5, 3, 10, 11, 12)),
        (None, "2022:01:02 03:04:05", datetime(2022, 1, 2, 3, 4, 5)),
        ("2020-02-29 23:59:59", None, datetime(2020, 2, 29, 23, 59, 59)),
        ("0000:00:00 00:00:00", None, None),
        ("garbage", None, None),
        (None, None, None),
    ],
)
def test_taken_at(
    tmp_path: Path, original: str | None, plain: str | None, expected: datetime | None
) -> None:
    exif = Image.Exif()
    if original:
        exif.get_ifd(EXIF_IFD_TAG)[DATETIME_ORIGINAL_TAG] = original
    if plain:
        exif[DATETIME_TAG] = plain
    path = save(half_red((16, 16)), tmp_path / "d.jpg", exif=exif)
    assert load_image(path).taken_at == expected
    assert header_info(path)[2] == expected


def test_broken_exif_keeps_the_photo() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (32, 16), RED).save(buf, "JPEG", exif=b"Exif\0\0MM\0*\0\0\0\x08\xff\xff")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Pillow's own "Corrupt EXIF data"
        decoded = load_image(buf)
    assert (decoded.width, decoded.height, decoded.taken_at) == (32, 16, None)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_file_is_refused(tmp_path: Path, fmt: str) -> None:
    path = save(random_image(1, (320, 240)), tmp_path / "t", fmt)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert reason_of(path).startswith("truncated or corrupt image data")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    assert reason_of(path) == "empty file"
    assert reason_of(io.BytesIO()) == "empty file"
    with pytest.raises(ImageDecodeError, match="empty file") as info:
        header_info(path)
    assert info.value.path == str(path)


def test_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("shopping list: milk, eggs\n", encoding="utf-8")
    assert reason_of(path) == "not an image (unidentified format)"


def test_formats_outside_the_list_are_refused(tmp_path: Path) -> None:
    path = save(half_red((8, 8)), tmp_path / "x.jpg", "PPM")  # Pillow reads PPM; we don't
    assert reason_of(path) == "not an image (unidentified format)"


def test_missing_file(tmp_path: Path) -> None:
    assert reason_of(tmp_path / "gone.jpg").startswith("cannot read file")


def test_16bit_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    ramp = np.linspace(0, 65535, 256 * 8).astype(np.uint16).reshape(8, 256)
    path = save(Image.fromarray(ramp), tmp_path / "g16.png")
    with Image.open(path) as img:
        assert img.mode.startswith("I")  # really stored as 16-bit
    rgb = np.asarray(load_image(path).image)
    assert rgb[..., 0].min() == 0 and rgb[..., 0].max() == 255
    assert len(np.unique(rgb)) > 200  # a gradient, not a white field
    assert (rgb[..., 0] == rgb[..., 2]).all()


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (np.array([[0, 257 * 128, 65535]], dtype=">u2"), [0, 128, 255]),  # I;16B
        (np.array([[0, 257 * 64, 70000]], dtype=np.int32), [0, 64, 255]),  # I
        (np.array([[0.0, 0.5, 1.0]], dtype=np.float32), [0, 127, 255]),  # F, 0..1
        (np.array([[0.0, 100.0, 300.0]], dtype=np.float32), [0, 100, 255]),  # F, 0..255
    ],
)
def test_high_bit_depth_tiff(tmp_path: Path, array: np.ndarray, expected: list[int]) -> None:
    path = save(Image.fromarray(array), tmp_path / "h.tif")
    assert np.asarray(load_image(path).image)[0, :, 1].tolist() == expected


def test_cmyk_jpeg(tmp_path: Path) -> None:
    img = Image.new("CMYK", (32, 32), (0, 255, 255, 0))  # pure red ink
    ImageDraw.Draw(img).rectangle((16, 0, 31, 31), fill=(255, 255, 0, 0))  # blue
    path = save(img, tmp_path / "c.jpg", quality=95)
    decoded = load_image(path).image
    assert close_to(decoded.getpixel((4, 16)), RED, 20)
    assert close_to(decoded.getpixel((28, 16)), (0, 0, 255), 20)


def test_transparency_uses_background(tmp_path: Path) -> None:
    img = Image.new("RGBA", (20, 10), (0, 0, 0, 0))
    ImageDraw.Draw(img).rectangle((10, 0, 19, 9), fill=(255, 0, 0, 128))
    path = save(img, tmp_path / "a.png")
    decoded = load_image(path, background=(10, 20, 30)).image
    assert decoded.getpixel((2, 2)) == (10, 20, 30)
    assert close_to(decoded.getpixel((15, 5)), (133, 10, 15), 2)  # half red over background
    assert load_image(path).image.getpixel((2, 2)) == (255, 255, 255)


def test_palette_with_transparency(tmp_path: Path) -> None:
    img = Image.new("P", (8, 8), 0)
    img.putpalette([*RED, 0, 255, 0])
    img.putpixel((0, 0), 1)
    path = save(img, tmp_path / "p.png", transparency=1)
    decoded = load_image(path, background=(1, 2, 3)).image
    assert decoded.getpixel((0, 0)) == (1, 2, 3)
    assert decoded.getpixel((4, 4)) == RED


@pytest.mark.parametrize(("mode", "value"), [("1", 1), ("L", 200), ("LA", (200, 255))])
def test_gray_modes(tmp_path: Path, mode: str, value) -> None:
    path = save(Image.new(mode, (8, 8), value), tmp_path / "g.png")
    expected = (255,) * 3 if mode == "1" else (200,) * 3
    assert load_image(path).image.getpixel((3, 3)) == expected


def test_huge_header_is_refused_fast(tmp_path: Path) -> None:
    path = tmp_path / "huge.png"
    path.write_bytes(huge_png_bytes(20000, 20000))
    start = time.perf_counter()
    assert reason_of(path).startswith("too large")
    with pytest.raises(ImageDecodeError, match="too large"):
        header_info(path)
    assert time.perf_counter() - start < 1.0


def test_own_cap_is_checked_from_the_header(tmp_path: Path) -> None:
    # 144 MP is under Pillow's hard limit, so our cap decides. The IDAT is broken, so had
    # any pixel been decoded first the reason would say "corrupt" instead.
    path = tmp_path / "big.png"
    path.write_bytes(huge_png_bytes(12000, 12000))
    assert reason_of(path) == "too large: 144.0 MP > 100 MP limit"
    assert reason_of(path, max_megapixels=50) == "too large: 144.0 MP > 50 MP limit"
    small = save(half_red((100, 100)), tmp_path / "s.png")
    assert reason_of(small, max_megapixels=0.005).startswith("too large")


def test_pillow_bomb_warning_is_neither_shown_nor_leaked(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    path.write_bytes(huge_png_bytes(12000, 12000))  # above Pillow's 89 MP warning level
    limit = Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a DecompressionBombWarning reaching us would raise
        filters = list(warnings.filters)
        assert header_info(path, max_megapixels=150) == (12000, 12000, None)
        assert warnings.filters == filters  # the local "ignore" did not outlive the call
    assert limit == Image.MAX_IMAGE_PIXELS


def test_jpeg_draft_keeps_min_side(tmp_path: Path) -> None:
    path = save(half_red((4000, 3000)), tmp_path / "big.jpg")
    decoded = load_image(path, min_side=224)
    assert 224 <= min(decoded.image.size) < 3000
    assert decoded.image.size == (500, 375)  # DCT-scaled by 1/8 while decoding
    assert (decoded.width, decoded.height) == (4000, 3000)
    assert close_to(decoded.image.getpixel((10, 10)), RED)


def test_draft_with_rotation(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = 6
    path = save(half_red((4000, 3000)), tmp_path / "big.jpg", exif=exif)
    decoded = load_image(path, min_side=224)
    assert decoded.image.size == (375, 500)
    assert (decoded.width, decoded.height) == (3000, 4000)
    assert close_to(decoded.image.getpixel((187, 10)), RED)


def test_other_formats_are_reduced_for_min_side(tmp_path: Path) -> None:
    path = save(half_red((1000, 800)), tmp_path / "big.png")
    decoded = load_image(path, min_side=100)
    assert 100 <= min(decoded.image.size) < 200
    assert (decoded.width, decoded.height) == (1000, 800)
    assert load_image(path, min_side=800).image.size == (1000, 800)  # never below min_side
    with pytest.raises(ValueError):
        load_image(path, min_side=0)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_no_file_handles_leak(tmp_path: Path) -> None:
    good = save(half_red((16, 16)), tmp_path / "ok.jpg")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(good.read_bytes()[:100])
    huge = tmp_path / "huge.png"
    huge.write_bytes(huge_png_bytes())
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        load_image(good)
        header_info(good)
        for path in (bad, huge):
            with pytest.raises(ImageDecodeError):
                load_image(path)
    assert len(os.listdir("/proc/self/fd")) == before


def test_hostile_tree(tmp_path: Path) -> None:
    tree = make_hostile_tree(tmp_path / "tree")
    for path in tree.good:
        decoded = load_image(path)
        assert decoded.image.mode == "RGB", path
        assert (decoded.width, decoded.height) == header_info(path)[:2] == decoded.image.size
    rotated = load_image(tree.roles["exif_rotated"])
    assert rotated.image.size == (rotated.width, rotated.height) == (64, 96)
    assert load_image(tree.roles["exif_date"]).taken_at == datetime(2019, 7, 4, 12, 30)
    for path, label in tree.bad.items():
        assert label in reason_of(path), path


def test_a_12000x3000_panorama_is_drafted_and_thumbnailed_in_proportion(tmp_path: Path) -> None:
    """RELIABILITY 6: decoded by DCT scaling to the smallest size whose short side still
    covers the model's input (1/8: 1500×375; at most 4× the input's side on the short
    side), and a thumbnail within the bound with the 4:1 aspect kept."""
    from search.imageio import jpeg_thumbnail
    from search.models.encoder import prepare_pixels

    path = save(half_red((12000, 3000)), tmp_path / "pano.jpg")
    decoded = load_image(path, min_side=224)
    assert decoded.image.size == (1500, 375)
    assert 224 <= min(decoded.image.size) <= 4 * 224
    assert (decoded.width, decoded.height) == (12000, 3000)
    assert prepare_pixels(decoded.image, 224).shape == (224, 224, 3)
    with open(path, "rb") as fp:
        thumb = Image.open(io.BytesIO(jpeg_thumbnail(fp, 320, max_megapixels=100)))
    assert thumb.size == (320, 80)


def _gif_with_huge_second_frame(path: Path) -> Path:
    """Two 64×64 frames, the second's image descriptor then claiming 65535×65535 (as
    Pillow's decompression_bomb_extents.gif does)."""
    frames = [Image.new("RGB", (64, 64), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(path, save_all=True, append_images=frames[1:])
    data = bytearray(path.read_bytes())
    pos = 13 + (3 << ((data[10] & 7) + 1) if data[10] & 0x80 else 0)
    descriptors = []
    while data[pos] != 0x3B:  # trailer
        if data[pos] == 0x21:  # extension: label, then sub-blocks
            pos += 2
        else:  # 0x2C image descriptor, optional local table, LZW code size, sub-blocks
            descriptors.append(pos)
            flags = data[pos + 9]
            pos += 10 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0) + 1
        while data[pos]:
            pos += data[pos] + 1
        pos += 1
    assert len(descriptors) == 2
    data[descriptors[1] + 5 : descriptors[1] + 9] = b"\xff\xff\xff\xff"
    path.write_bytes(bytes(data))
    return path


def test_a_gif_whose_second_frame_claims_huge_extents_uses_the_first(tmp_path: Path) -> None:
    """RELIABILITY 5: only frame 0 is decoded; the bomb in frame 1 is never reached."""
    path = _gif_with_huge_second_frame(tmp_path / "bomb.gif")
    with Image.open(path) as im, pytest.raises((Image.DecompressionBombError, OSError, EOFError)):
        im.seek(1)  # the file really holds the bomb Pillow refuses
        im.load()
    started = time.perf_counter()
    decoded = load_image(path)
    assert decoded.image.size == (64, 64) and (decoded.width, decoded.height) == (64, 64)
    assert time.perf_counter() - started < 1
    assert read_header(path).width == 64
