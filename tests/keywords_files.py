"""Photos that carry words in their metadata, written the way cameras and photo managers
write them: IPTC-IIM in a Photoshop APP13 segment, XMP, EXIF ImageDescription/XPKeywords."""

from __future__ import annotations

import io
import struct
from pathlib import Path

from PIL import Image


def _iptc_segment(keywords: list[str], caption: str | None) -> bytes:
    def dataset(tag: int, value: str) -> bytes:
        raw = value.encode("utf-8")
        return bytes([0x1C, 2, tag]) + struct.pack(">H", len(raw)) + raw

    iim = b"".join(dataset(25, k) for k in keywords)
    if caption:
        iim += dataset(120, caption)
    pad = b"\x00" if len(iim) % 2 else b""
    resource = b"8BIM" + struct.pack(">H", 0x0404) + b"\x00\x00" + struct.pack(">I", len(iim))
    payload = b"Photoshop 3.0\x00" + resource + iim + pad
    return b"\xff\xed" + struct.pack(">H", len(payload) + 2) + payload


def write_photo(
    path: Path,
    colour: str = "gray",
    *,
    iptc: list[str] = (),
    iptc_caption: str | None = None,
    xmp_subjects: list[str] = (),
    description: str | None = None,
    xp_keywords: list[str] = (),
    size: int = 48,
) -> Path:
    """A JPEG of one colour with the given words in its metadata."""
    exif = Image.Exif()
    if description:
        exif[0x010E] = description
    if xp_keywords:
        exif[0x9C9E] = ";".join(xp_keywords).encode("utf-16-le") + b"\x00\x00"
    extra = {}
    if xmp_subjects:
        items = "".join(f"<rdf:li>{s}</rdf:li>" for s in xmp_subjects)
        extra["xmp"] = (
            '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description>'
            f"<dc:subject><rdf:Bag>{items}</rdf:Bag></dc:subject>"
            "</rdf:Description></rdf:RDF></x:xmpmeta>"
        ).encode()
    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, "JPEG", exif=exif, **extra)
    data = buf.getvalue()
    if iptc or iptc_caption:
        data = data[:2] + _iptc_segment(list(iptc), iptc_caption) + data[2:]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
