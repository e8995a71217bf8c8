"""The optional codecs: HEIC/HEIF through pillow-heif (the imgsearch[heif] extra), AVIF
through Pillow's own plugin, camera RAW through LibRaw (rawpy, imgsearch[raw]), videos
through PyAV (imgsearch[video], search.videos).

Each is imported on the first file that needs it, so a library without such files, and
every text search, never pays for the import (pillow-heif 27 ms, rawpy 57 ms here).
"""

from __future__ import annotations

import functools
import os

from search import videos

HEIF_EXTENSIONS = frozenset({".heic", ".heif"})
AVIF_EXTENSIONS = frozenset({".avif"})
RAW_EXTENSIONS = frozenset({".dng", ".cr2", ".cr3", ".nef", ".arw", ".orf", ".rw2", ".raf"})

# The reason a file is listed with when its codec is not installed. Such failures are tried
# again on every run (search.catalog.store.failure_records), so installing the codec is
# enough: nobody has to touch the files.
CODEC_MISSING = "codec missing"  # search.videos.MISSING starts with it too

# ISO base media files (HEIF, AVIF) open with a "ftyp" box naming brands. "mif1"/"msf1" are
# generic image brands both formats list, so they decide nothing alone.
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
FTYP_HEAD = 64  # bytes read to find the brands


@functools.cache
def heif_available() -> bool:
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


@functools.cache
def avif_available() -> bool:
    from PIL import features

    return bool(features.check("avif"))


@functools.cache
def rawpy_module():
    """The rawpy module, or None when the imgsearch[raw] extra is not installed."""
    try:
        import rawpy
    except ImportError:
        return None
    return rawpy


def container_format(head: bytes) -> str | None:
    """ "HEIF" or "AVIF" when `head` (a file's first FTYP_HEAD bytes) opens such a file."""
    if len(head) < 16 or head[4:8] != b"ftyp":
        return None
    size = min(int.from_bytes(head[:4], "big"), len(head))
    brands = {head[8:12]} | {head[i : i + 4] for i in range(16, size - 3, 4)}
    if brands & _AVIF_BRANDS:
        return "AVIF"
    if brands & _HEIF_BRANDS:
        return "HEIF"
    return None


def missing_codec(path: str) -> str | None:
    """Why a file with this name cannot be read here, when the reason is a codec this
    installation lacks; None when nothing is missing."""
    ext = os.path.splitext(path)[1].lower()
    for kind, extensions in (
        ("HEIF", HEIF_EXTENSIONS),
        ("AVIF", AVIF_EXTENSIONS),
        ("RAW", RAW_EXTENSIONS),
        ("VIDEO", videos.VIDEO_EXTENSIONS),
    ):
        if ext in extensions:
            return missing_reason(kind)
    return None


def missing_reason(kind: str) -> str | None:
    """Why files of this kind ("HEIF", "AVIF", "RAW", "VIDEO") cannot be read here; None
    when their codec is installed."""
    if kind == "HEIF" and not heif_available():
        return f"{CODEC_MISSING}: install imgsearch[heif] to index HEIC/HEIF photos"
    if kind == "AVIF" and not avif_available():
        return f"{CODEC_MISSING}: this Pillow has no AVIF codec; install Pillow >= 11.3"
    if kind == "RAW" and rawpy_module() is None:
        return f"{CODEC_MISSING}: install imgsearch[raw] to index camera RAW files"
    if kind == "VIDEO" and videos.av_module() is None:
        return videos.MISSING
    return None


def is_raw(name: str | None) -> bool:
    return name is not None and os.path.splitext(name)[1].lower() in RAW_EXTENSIONS
