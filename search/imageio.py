"""Decode untrusted image files into upright 8-bit RGB, refusing anything unsafe.

Photo libraries hold truncated downloads, decompression bombs, 16-bit scans, CMYK prints
and phone pictures stored sideways. Everything here either returns a fully loaded RGB
image or raises ``ImageDecodeError`` with a short reason the user can act on.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from search import codecs
from search.errors import ImageDecodeError
from search.keywords import embedded_words
from search.rawfiles import read_raw

IMAGE_EXTENSIONS: frozenset[str] = (
    frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
    | codecs.HEIF_EXTENSIONS
    | codecs.AVIF_EXTENSIONS
    | codecs.RAW_EXTENSIONS
)
# Pictures a person keeps beside photos that are never opened here: vector and PostScript
# files can carry script (RELIABILITY 13). Found by the walk and listed with these reasons,
# so a missing picture has an explanation.
UNSUPPORTED_FORMATS: dict[str, str] = {
    ".svg": "unsupported format: SVG drawings are not indexed",
    ".svgz": "unsupported format: SVG drawings are not indexed",
    ".eps": "unsupported format: PostScript files are not indexed",
    ".ps": "unsupported format: PostScript files are not indexed",
    ".ai": "unsupported format: Illustrator files are not indexed",
}

DEFAULT_MAX_MEGAPIXELS = 100.0
DECODER_BLOCK = 4 << 20
THUMBNAIL_QUALITY = 82

# Only the formats above may be sniffed: without this list Pillow would also try exotic
# plugins (EPS even shells out to Ghostscript) on whatever bytes a file holds. Camera JPEGs
# with a multi-picture index still open (as format "MPO") through the JPEG entry. HEIF and
# AVIF are chosen from their "ftyp" brands instead (_image_open), and RAW by the file's name.
_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")

_ORIENTATION = 0x0112
_EXIF_IFD = 0x8769
_DATETIME_ORIGINAL = 36867
_DATETIME = 306

# EXIF orientation -> the transpose that makes the picture upright (as ImageOps.exif_transpose).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_QUARTER_TURNS = frozenset({5, 6, 7, 8})

# Pillow's plugins report malformed data with any of these, depending on the format.
_CORRUPT_DATA_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    struct.error,
    zlib.error,
)

_HIGH_BIT_DEPTH = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N", "F"})

Source = str | os.PathLike | BinaryIO


@dataclass(frozen=True)
class DecodedImage:
    image: Image.Image  # mode "RGB", upright, possibly reduced (see ``min_side``)
    width: int  # full-resolution size, upright
    height: int
    taken_at: datetime | None
    keywords: str = ""  # words embedded in the file (search.keywords)


@dataclass(frozen=True)
class ImageHeader:
    width: int  # upright
    height: int
    taken_at: datetime | None
    orientation: int  # EXIF orientation, 1 (upright) when absent or invalid
    format: str  # Pillow's name: "JPEG", "PNG", ...
    mode: str  # Pillow's mode of the stored pixels: "RGB", "L", "CMYK", ...
    keywords: str = ""  # words embedded in the file (search.keywords)


def load_image(
    source: Source,
    *,
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS,
    min_side: int | None = None,
    background: tuple[int, int, int] = (255, 255, 255),
    name: str | None = None,
) -> DecodedImage:
    """Decode ``source`` (a path, or a seekable binary file read from its start).

    With ``min_side`` the image may come back smaller than the file, but its shorter side
    stays >= ``min_side``: JPEGs are DCT-scaled while decoding, other formats box-reduced
    after. Transparent pixels are composited onto ``background`` so results are repeatable.
    ``name``, the file's name when ``source`` is an open file, tells camera RAW files
    apart (they are TIFFs to a sniffer, whose first picture is a thumbnail).
    """
    if min_side is not None and min_side < 1:
        raise ValueError(f"min_side must be >= 1, got {min_side}")
    with _open(source) as (fp, path):
        if codecs.is_raw(name or path):
            raw = read_raw(fp, path, max_megapixels=max_megapixels, min_side=min_side)
            taken_at, keywords = _dated(raw.exif, None)
            return DecodedImage(
                _reduced(raw.image, min_side), raw.width, raw.height, taken_at, keywords
            )
        with _decode_errors(fp, path), _image_open(fp, path) as im:
            header = _read_header(im, max_megapixels, path)
            if min_side is not None:
                # Draft only ever shrinks by 1/2, 1/4 or 1/8 while staying >= the requested size.
                im.draft("RGB", (min_side, min_side))
            # Feed the decoder a few MB per call, not Pillow's 64 KB: each call releases and
            # retakes the GIL, and a 4 MB photo in 64 KB steps waited on it 60 times, for up to
            # 5 ms each, whenever another thread ran Python (decoding 5× slower beside an import).
            im.decodermaxblock = DECODER_BLOCK
            # Force the decode here, so truncated data raises now and inside the error mapping.
            im.load()
    # Outside the error mapping on purpose: every mode a decoder yields converts, so a
    # failure here is a bug to surface, not a bad file.
    rgb = _reduced(_to_rgb(im, background), min_side)
    if header.orientation != 1:
        rgb = rgb.transpose(_UPRIGHT[header.orientation])
    return DecodedImage(rgb, header.width, header.height, header.taken_at, header.keywords)


def _reduced(image: Image.Image, min_side: int | None) -> Image.Image:
    if min_side is not None and (factor := min(image.size) // min_side) >= 2:
        return image.reduce(factor)
    return image


def jpeg_thumbnail(
    source: Source, side: int, *, max_megapixels: float, name: str | None = None
) -> bytes:
    """An upright JPEG that fits in side x side: decoded no larger than it needs (see
    ``min_side``), then resized with Lanczos."""
    image = load_image(source, max_megapixels=max_megapixels, min_side=side, name=name).image
    return thumbnail_jpeg(image, side)


def thumbnail_jpeg(image: Image.Image, side: int) -> bytes:
    """`image` (RGB, upright), fitted in side x side with Lanczos, as JPEG."""
    image.thumbnail((side, side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=THUMBNAIL_QUALITY, optimize=True)
    return out.getvalue()


def pixel_digest(image: Image.Image) -> str:
    """The decoded image's size and pixels, hashed (blake2b, 128 bits)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{image.mode} {image.size}".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def read_header(
    source: Source, *, max_megapixels: float = DEFAULT_MAX_MEGAPIXELS, name: str | None = None
) -> ImageHeader:
    """What the file header says, without decoding pixels; refuses what load_image refuses
    before decoding (unknown formats, too many pixels)."""
    with _open(source) as (fp, path):
        if codecs.is_raw(name or path):
            raw = read_raw(fp, path, max_megapixels=max_megapixels, min_side=None, decode=False)
            taken_at, keywords = _dated(raw.exif, None)
            return ImageHeader(raw.width, raw.height, taken_at, 1, "RAW", "RGB", keywords)
        with _decode_errors(fp, path), _image_open(fp, path) as im:
            return _read_header(im, max_megapixels, path)


def _image_open(fp: BinaryIO, path: str | None) -> Image.Image:
    """Image.open limited to the formats this file may be: HEIF and AVIF by their brands
    (each codec loaded only then), everything else by the list above."""
    head = fp.read(codecs.FTYP_HEAD)
    fp.seek(0)
    kind = codecs.container_format(head)
    if kind is None:
        return Image.open(fp, formats=_FORMATS)
    missing = codecs.missing_reason(kind)
    if missing is not None:
        raise ImageDecodeError(missing, path)
    try:
        return Image.open(fp, formats=(kind,))
    except UnidentifiedImageError as exc:  # the brand says it is one: it is damaged
        raise ImageDecodeError(f"truncated or corrupt {kind} data", path) from exc


@contextmanager
def _open(source: Source) -> Iterator[tuple[BinaryIO, str | None]]:
    if not isinstance(source, (str, os.PathLike)):
        yield source, None  # the caller owns the file object and closes it
        return
    path = os.fsdecode(source)
    # Not a with around the yield: that would also catch, and mislabel as unreadable, the
    # OSErrors raised while the caller decodes.
    try:
        fp = open(path, "rb")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        raise ImageDecodeError(f"cannot read file: {exc.strerror or exc}", path) from exc
    with fp:
        yield fp, path


@contextmanager
def _decode_errors(fp: BinaryIO, path: str | None) -> Iterator[None]:
    """Turn everything Pillow raises on hostile input into ``ImageDecodeError``."""
    try:
        with warnings.catch_warnings():
            # Pillow warns above ~89 MP; our own cap (checked from the header) is the policy,
            # so the warning must neither be printed nor, as an error, undercut that cap.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    except Image.DecompressionBombError as exc:
        # Raised inside Image.open above 2 * MAX_IMAGE_PIXELS, before we see the size.
        limit = 2 * Image.MAX_IMAGE_PIXELS / 1e6
        raise ImageDecodeError(f"too large: more than {limit:.0f} MP", path) from exc
    except UnidentifiedImageError as exc:  # must precede OSError, which it subclasses
        reason = "empty file" if _is_empty(fp) else "not an image (unidentified format)"
        raise ImageDecodeError(reason, path) from exc
    except _CORRUPT_DATA_ERRORS as exc:
        raise ImageDecodeError(f"truncated or corrupt image data: {exc}", path) from exc


def _is_empty(fp: BinaryIO) -> bool:
    try:
        return fp.seek(0, os.SEEK_END) == 0
    except (OSError, ValueError):  # unseekable or already closed
        return False


def _read_header(im: Image.Image, max_megapixels: float, path: str | None) -> ImageHeader:
    width, height = im.size
    megapixels = width * height / 1e6
    if megapixels > max_megapixels:
        raise ImageDecodeError(
            f"too large: {megapixels:.1f} MP > {max_megapixels:g} MP limit", path
        )
    exif = _read_exif(im)
    # HEIF rotates while decoding (its "irot" box; pillow-heif then reports orientation 1).
    orientation = exif.get(_ORIENTATION, 1)
    if not isinstance(orientation, int) or orientation not in _UPRIGHT:
        orientation = 1
    if orientation in _QUARTER_TURNS:
        width, height = height, width
    taken_at, words = _dated(exif, im)
    return ImageHeader(width, height, taken_at, orientation, im.format or "", im.mode, words)


def _dated(exif: Image.Exif, im: Image.Image | None) -> tuple[datetime | None, str]:
    """The capture date and the embedded words (search.keywords) a file's metadata holds."""
    taken = _exif_value(exif.get_ifd(_EXIF_IFD), _DATETIME_ORIGINAL) or _exif_value(exif, _DATETIME)
    return _parse_exif_datetime(taken), embedded_words(im, exif)


def _read_exif(im: Image.Image) -> Image.Exif:
    # PngImageFile.getexif() decodes every pixel to look for an eXIf chunk after the image
    # data; only trust one found in the header, so read_header stays cheap and agrees with
    # load_image.
    if im.format == "PNG" and "exif" not in im.info:
        return Image.Exif()
    try:
        exif = im.getexif()
        exif.get_ifd(_EXIF_IFD)  # parse the sub-IFD now, so damage there is caught here too
    except Exception:  # metadata is optional: broken EXIF must not cost the user a photo
        return Image.Exif()
    return exif


def _exif_value(tags: Image.Exif | dict, tag: int) -> str | None:
    value = tags.get(tag)
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return value.strip("\x00 ") if isinstance(value, str) else None


def _parse_exif_datetime(text: str | None) -> datetime | None:
    if not text:
        return None
    # The standard says "YYYY:MM:DD HH:MM:SS"; some editors write dashes in the date.
    for fmt in ("%Y:%m:%d %H:%M:%S", "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.strptime(text[:19], fmt)
        except ValueError:
            continue
    return None  # includes the "0000:00:00 00:00:00" cameras write when the clock is unset


def _to_rgb(im: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """A new, independent RGB image (never the file-backed ``im`` itself)."""
    if im.mode in _HIGH_BIT_DEPTH:
        im = _to_8bit_gray(im)
    if im.has_transparency_data:
        rgba = im.convert("RGBA")  # also applies palette / tRNS transparency
        out = Image.new("RGB", im.size, background)
        out.paste(rgba, mask=rgba.getchannel("A"))
        return out
    return im.convert("RGB")  # CMYK (Adobe-inverted too), L, 1, P, YCbCr; RGB -> copy


def _to_8bit_gray(im: Image.Image) -> Image.Image:
    # Pillow's own convert() clips these to 0..255, which turns a 16-bit photo white.
    arr = np.asarray(im)
    if im.mode == "F":
        arr = np.nan_to_num(arr)
        # Float images are conventionally 0..1; larger values are taken as 0..255 already.
        if arr.max(initial=0.0) <= 1.0:
            arr = arr * 255
        return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    # Pillow also uses "I" for 16-bit PNGs (older versions) and TIFFs, so treat it as 16-bit;
    # 65535 // 257 == 255 maps that range exactly.
    return Image.fromarray((np.clip(arr, 0, 65535) // 257).astype(np.uint8))
