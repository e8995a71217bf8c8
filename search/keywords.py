"""Words a photo carries about itself: IPTC keywords, caption and title; XMP dc:subject,
dc:title and dc:description; EXIF ImageDescription and the Windows XP tags (XPKeywords,
XPTitle, XPSubject, XPComment). Read from the headers Pillow has already parsed, so no
pixels are decoded for them."""

from __future__ import annotations

import html
import re

from PIL import Image, IptcImagePlugin

# IPTC-IIM record 2: object name (title), keywords, caption/abstract, headline.
_IPTC = ((2, 5), (2, 25), (2, 120), (2, 105))
_EXIF_DESCRIPTION = 0x010E
_XP_TAGS = (0x9C9B, 0x9C9C, 0x9C9E, 0x9C9F)  # XPTitle, XPComment, XPKeywords, XPSubject
# A packet larger than this is not a keyword list; reading it would only cost memory.
MAX_XMP = 1 << 20
MAX_WORDS = 4096  # characters kept per image
_XMP_FIELD = re.compile(rb"<dc:(subject|title|description)\b[^>]*>(.*?)</dc:\1>", re.S | re.I)
_XMP_ITEM = re.compile(rb"<rdf:li\b[^>]*>(.*?)</rdf:li>", re.S | re.I)
_TAG = re.compile(rb"<[^>]*>")


def embedded_words(img: Image.Image | None, exif: Image.Exif) -> str:
    """The words, one piece per line; '' when the file has none. `exif`: the image's, as
    search.imageio already parsed it; `img` None where only EXIF exists (camera RAW).
    Never raises: metadata is extra, and a photo with broken metadata is still a photo."""
    pieces: list[str] = []
    readers = [lambda: _exif(exif)]
    if img is not None:
        readers = [lambda: _iptc(img), lambda: _xmp(img), *readers]
    for read in readers:
        try:
            pieces += read()
        except Exception:  # noqa: BLE001 - malformed metadata of any kind is only skipped
            continue
    seen: dict[str, None] = {}
    for piece in pieces:
        piece = " ".join(piece.replace("\x00", " ").split())
        if piece:
            seen.setdefault(piece, None)
    return "\n".join(seen)[:MAX_WORDS]


def _iptc(img: Image.Image) -> list[str]:
    info = IptcImagePlugin.getiptcinfo(img) or {}
    out = []
    for key in _IPTC:
        values = info.get(key)
        for value in values if isinstance(values, list) else [values] if values else []:
            out.append(value.decode("utf-8", "replace"))
    return out


def _xmp(img: Image.Image) -> list[str]:
    packet = img.info.get("xmp") or img.info.get("XML:com.adobe.xmp") or b""
    if isinstance(packet, str):
        packet = packet.encode("utf-8", "replace")
    if not packet or len(packet) > MAX_XMP:
        return []
    out = []
    for _, body in _XMP_FIELD.findall(packet):
        items = _XMP_ITEM.findall(body) or [body]
        for item in items:
            text = _TAG.sub(b" ", item).decode("utf-8", "replace")
            out.append(html.unescape(text))
    return out


def _exif(exif: Image.Exif) -> list[str]:
    out = []
    description = exif.get(_EXIF_DESCRIPTION)
    if isinstance(description, bytes):
        description = description.decode("utf-8", "replace")
    if isinstance(description, str):
        out.append(description)
    for tag in _XP_TAGS:
        value = exif.get(tag)
        if isinstance(value, tuple):  # some writers store the UTF-16 bytes as a tuple
            value = bytes(value)
        if isinstance(value, bytes):
            out.append(value.decode("utf-16-le", "replace").replace(";", "\n"))
    return out
