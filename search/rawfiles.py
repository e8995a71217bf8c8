"""Camera RAW files (dng, cr2, cr3, nef, arw, orf, rw2, raf) through LibRaw (rawpy).

Cameras embed a JPEG (or bitmap) preview, often full size, that decodes ~50× faster than
demosaicing the sensor data; it is used whenever it is at least as large as the caller
needs, and LibRaw's real decode (camera white balance, half size when that is enough)
otherwise. The pixel cap is checked on the sensor size before anything is decoded.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from PIL import Image

from search.codecs import missing_reason, rawpy_module
from search.errors import ImageDecodeError

# LibRaw's flip -> the transpose that makes the preview upright (its real decode applies it).
_UPRIGHT = {
    3: Image.Transpose.ROTATE_180,
    5: Image.Transpose.ROTATE_90,
    6: Image.Transpose.ROTATE_270,
}
_QUARTER_TURNS = frozenset({5, 6})
# The previews a camera writes are JPEGs or raw bitmaps: nothing else may be sniffed.
_PREVIEW_FORMATS = ("JPEG",)


@dataclass(frozen=True)
class RawPicture:
    image: Image.Image | None  # upright RGB; None for a header-only read
    width: int  # the sensor's full size, upright
    height: int
    exif: Image.Exif  # empty where the container is not TIFF-based (cr3, raf)


def read_raw(
    fp: BinaryIO,
    path: str | None,
    *,
    max_megapixels: float,
    min_side: int | None,
    decode: bool = True,
) -> RawPicture:
    rawpy = rawpy_module()
    if rawpy is None:
        raise ImageDecodeError(missing_reason("RAW") or "RAW codec missing", path)
    data = fp.read()
    try:
        with rawpy.imread(io.BytesIO(data)) as raw:
            sizes = raw.sizes
            width, height = sizes.width, sizes.height
            megapixels = width * height / 1e6
            if megapixels > max_megapixels:
                raise ImageDecodeError(
                    f"too large: {megapixels:.1f} MP > {max_megapixels:g} MP limit", path
                )
            if sizes.flip in _QUARTER_TURNS:
                width, height = height, width
            image = None
            if decode:
                need = min_side if min_side is not None else min(width, height)
                image = _preview(raw, rawpy, need, sizes.flip, max_megapixels)
                if image is None:
                    half = min_side is not None and min(width, height) // 2 >= min_side
                    pixels = raw.postprocess(use_camera_wb=True, output_bps=8, half_size=half)
                    image = Image.fromarray(np.ascontiguousarray(pixels[..., :3]), "RGB")
    except ImageDecodeError:
        raise
    except (rawpy.LibRawError, rawpy.NotSupportedError) as exc:
        raise ImageDecodeError(f"not a readable RAW file: {_message(exc)}", path) from exc
    except (OSError, ValueError) as exc:
        raise ImageDecodeError(f"truncated or corrupt RAW data: {exc}", path) from exc
    return RawPicture(image, width, height, _exif(data))


def _preview(raw, rawpy, need: int, flip: int, max_megapixels: float) -> Image.Image | None:
    """The camera's own preview, upright, when its shorter side is >= `need`."""
    try:
        thumb = raw.extract_thumb()
    except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError):
        return None
    if thumb.format == rawpy.ThumbFormat.JPEG:
        try:
            with Image.open(io.BytesIO(thumb.data), formats=_PREVIEW_FORMATS) as im:
                if im.width * im.height / 1e6 > max_megapixels or min(im.size) < need:
                    return None
                im.draft("RGB", (need, need))
                image = im.convert("RGB")
        except (OSError, SyntaxError, ValueError):
            return None  # a damaged preview: the sensor data may still be fine
    else:
        pixels = np.asarray(thumb.data)
        if pixels.ndim != 3 or pixels.shape[2] < 3 or pixels.dtype != np.uint8:
            return None
        image = Image.fromarray(np.ascontiguousarray(pixels[..., :3]), "RGB")
    transpose = _UPRIGHT.get(flip)
    image = image if transpose is None else image.transpose(transpose)
    return image if min(image.size) >= need else None


def _exif(data: bytes) -> Image.Exif:
    """IFD0 and the EXIF sub-IFD of a TIFF-based RAW (dng, cr2, nef, arw, orf, rw2), for
    the capture date and any description; empty for the others."""
    exif = Image.Exif()
    if data[:4] not in (b"II*\x00", b"MM\x00*"):
        return exif
    try:
        exif.load(data)
        exif.get_ifd(0x8769)
    except Exception:  # noqa: BLE001 - metadata is optional: a damaged tag costs no photo
        return Image.Exif()
    return exif


def _message(exc: Exception) -> str:
    text = exc.args[0] if exc.args else type(exc).__name__
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return str(text)
