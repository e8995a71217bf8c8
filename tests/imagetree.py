"""Builders for small deterministic test images and a "hostile" photo folder.

The hostile tree mimics what real photo libraries contain: odd file names, exotic pixel
modes, EXIF quirks, broken files, NAS/OS metadata folders and symlink cycles. Indexer tests
walk it and compare what they find against the expectations recorded in ``HostileTree``.
"""

from __future__ import annotations

import os
import random
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

ORIENTATION_TAG = 0x0112
EXIF_IFD_TAG = 0x8769
DATETIME_ORIGINAL_TAG = 36867
EXIF_DATE = "2019:07:04 12:30:00"
HUGE_PNG_SIDE = 20000


@dataclass
class HostileTree:
    """What ``make_hostile_tree`` wrote and what an indexer is expected to make of it."""

    root: Path
    # Files that must decode and index without error.
    good: list[Path] = field(default_factory=list)
    # File -> lower-case substring expected in the failure reason.
    bad: dict[Path, str] = field(default_factory=dict)
    # Pictures never opened (a format not indexed) -> the substring of the reason listed.
    unsupported: dict[Path, str] = field(default_factory=dict)
    # Files a walker must never report (metadata folders, hidden files, non-image types).
    ignored: list[Path] = field(default_factory=list)
    # Directory symlinks that form cycles; empty where the platform refuses symlinks.
    symlinks: list[Path] = field(default_factory=list)
    # Named handles on files that specific tests need (e.g. "exif_rotated", "exif_date").
    roles: dict[str, Path] = field(default_factory=dict)
    # Good files the filesystem refused to create (reserved characters, encodings).
    skipped_names: list[str] = field(default_factory=list)

    @property
    def failures(self) -> dict[Path, str]:
        """What an index run lists as failed: the bad files and the unsupported ones."""
        return {**self.bad, **self.unsupported}


def random_image(seed: int, size: tuple[int, int] = (96, 72), mode: str = "RGB") -> Image.Image:
    """Random colour blocks and shapes; different seeds give visibly different pictures."""
    rnd = random.Random(seed)
    w, h = size
    img = Image.new("RGB", size, _rgb(rnd))
    draw = ImageDraw.Draw(img)
    for _ in range(6):
        x0, y0 = rnd.randrange(w), rnd.randrange(h)
        x1, y1 = rnd.randrange(x0, w + 1), rnd.randrange(y0, h + 1)
        if rnd.random() < 0.5:
            draw.rectangle((x0, y0, x1, y1), fill=_rgb(rnd))
        else:
            draw.ellipse((x0, y0, x1, y1), fill=_rgb(rnd))
    return img if mode == "RGB" else img.convert(mode)


def make_jpeg(
    path: Path, seed: int, size: tuple[int, int] = (96, 72), mode: str = "RGB", **save: Any
) -> Path:
    """Write a random JPEG (extra keyword arguments go to ``Image.save``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    random_image(seed, size, mode).save(path, format="JPEG", quality=90, **save)
    return path


def make_png(
    path: Path, seed: int, size: tuple[int, int] = (96, 72), mode: str = "RGB", **save: Any
) -> Path:
    """Write a random PNG (extra keyword arguments go to ``Image.save``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    random_image(seed, size, mode).save(path, format="PNG", **save)
    return path


def huge_png_bytes(width: int = HUGE_PNG_SIDE, height: int = HUGE_PNG_SIDE) -> bytes:
    """A structurally valid PNG header that claims enormous dimensions.

    Only the IHDR is honest; the IDAT holds a few bytes, so the file is tiny on disk but a
    naive decoder would try to allocate width*height*3 bytes. It exercises the pixel limit.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 4))
        + chunk(b"IEND", b"")
    )


def make_hostile_tree(root: Path) -> HostileTree:
    """Populate ``root`` with good, bad and ignorable files plus symlink cycles."""
    root.mkdir(parents=True, exist_ok=True)
    tree = HostileTree(root=root)
    seeds = iter(range(1000, 2000))  # one fresh seed per file, so no two files match

    def good(rel: str, role: str | None = None) -> Path:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tree.good.append(path)
        if role:
            tree.roles[role] = path
        return path

    # Plain formats.
    make_jpeg(good("plain.jpg", "jpeg"), next(seeds))
    make_png(good("plain.png", "png"), next(seeds), size=(120, 90))
    random_image(next(seeds), (80, 64)).save(good("plain.webp", "webp"), "WEBP", quality=80)
    frames = [random_image(next(seeds), (64, 48)).convert("P") for _ in range(2)]
    frames[0].save(
        good("animated.gif", "animated_gif"),
        save_all=True,
        append_images=frames[1:],
        duration=100,
        loop=0,
    )

    # Metadata quirks. The rotated file is stored landscape and must display portrait.
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = 6
    make_jpeg(good("rotated_exif6.jpg", "exif_rotated"), next(seeds), (96, 64), exif=exif)
    exif = Image.Exif()
    exif.get_ifd(EXIF_IFD_TAG)[DATETIME_ORIGINAL_TAG] = EXIF_DATE
    make_jpeg(good("dated.jpg", "exif_date"), next(seeds), exif=exif)

    # Pixel modes that trip up code assuming 8-bit RGB.
    ramp = struct.pack(f"<{64 * 48}H", *(v * 21 for v in range(64 * 48)))  # up to 64491
    Image.frombytes("I;16", (64, 48), ramp).save(good("gradient16.png", "png16"))
    make_jpeg(good("cmyk.jpg", "cmyk"), next(seeds), mode="CMYK")
    rgba = random_image(next(seeds), (96, 72)).convert("RGBA")
    ImageDraw.Draw(rgba).rectangle((0, 0, 47, 71), fill=(0, 0, 0, 0))
    ImageDraw.Draw(rgba).rectangle((48, 0, 71, 71), fill=(255, 0, 0, 128))
    rgba.save(good("rgba.png", "rgba"))
    make_png(good("palette.png", "palette"), next(seeds), mode="P")
    make_jpeg(good("gray.jpg", "grayscale"), next(seeds), mode="L")
    make_jpeg(good("PHOTO.JPG", "upper_ext"), next(seeds), (160, 120))

    # Names that break quoting, URLs, HTML or argument parsing; skipped where forbidden.
    odd_names = [
        "café ñ 日本.jpg",
        "with space & 'quote'.png",
        "#hash%20.jpeg",
        "-starts-with-dash.jpg",
        '"><img src=x onerror=alert(1)>.jpg',
    ]
    for name in odd_names:
        path = root / name
        seed = next(seeds)
        try:
            (make_png if name.endswith(".png") else make_jpeg)(path, seed)
        except (OSError, UnicodeError, ValueError):
            tree.skipped_names.append(name)
            continue
        good(name)

    # Same basename in two folders must not collide; deep nesting must be reached.
    make_jpeg(good("a/IMG_1.jpg", "dup_a"), next(seeds))
    make_jpeg(good("b/IMG_1.jpg", "dup_b"), next(seeds), (100, 75))
    make_jpeg(good("l1/l2/l3/l4/l5/deep.jpg", "deep"), next(seeds), (320, 240))
    make_jpeg(good("sub/inside.jpg"), next(seeds))

    # Broken files, each with the reason an indexer should report.
    whole = root / "truncated.jpg"
    make_jpeg(whole, next(seeds), (320, 240))
    data = whole.read_bytes()
    whole.write_bytes(data[: len(data) // 2])
    tree.bad[whole] = "truncated"
    (root / "empty.jpg").write_bytes(b"")
    tree.bad[root / "empty.jpg"] = "empty"
    (root / "notes.jpg").write_text("shopping list: milk, eggs\n", encoding="utf-8")
    tree.bad[root / "notes.jpg"] = "not an image"
    (root / "huge.png").write_bytes(huge_png_bytes())
    tree.bad[root / "huge.png"] = "too large"
    # Pictures never opened (script inside), listed with why (RELIABILITY 13).
    (root / "drawing.svg").write_text(
        '<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>\n',
        encoding="utf-8",
    )
    tree.unsupported[root / "drawing.svg"] = "unsupported format: svg"
    (root / "print.EPS").write_text("%!PS-Adobe-3.0 EPSF-3.0\n(x) print\n", encoding="utf-8")
    tree.unsupported[root / "print.EPS"] = "unsupported format: postscript"

    # Real images in places a walker must skip, so only the location can exclude them.
    for rel in (
        ".git/objects/thumb.jpg",
        "@eaDir/plain.jpg/SYNOPHOTO_THUMB_XL.jpg",
        ".Trashes/501/deleted.jpg",
        "$RECYCLE.BIN/S-1-5-21/$R0ABCDE.jpg",
        ".hidden.jpg",
        "System Volume Information/IndexerVolumeGuid.jpg",
        "._IMG_1.JPG",  # a macOS AppleDouble companion, named like the photo
    ):
        tree.ignored.append(make_jpeg(root / rel, next(seeds)))
    (root / "readme.txt").write_text("not a photo\n", encoding="utf-8")
    tree.ignored.append(root / "readme.txt")
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1" + bytes(64))
    tree.ignored.append(root / ".DS_Store")

    # Cycles: a relative link to an ancestor and an absolute link back to the root.
    for link, target in (
        (root / "l1/l2/loop", Path("..")),
        (root / "sub/back", root.resolve()),
    ):
        try:
            os.symlink(target, link, target_is_directory=True)
        except (OSError, NotImplementedError):
            continue  # e.g. Windows without developer mode
        tree.symlinks.append(link)

    return tree


def _rgb(rnd: random.Random) -> tuple[int, int, int]:
    return rnd.randrange(256), rnd.randrange(256), rnd.randrange(256)
