"""A small photo folder with known duplicates: each kind the finder tells apart, and
look-alikes it must keep apart. Pictures are blobs of colour on a gradient, different for
every seed; JPEGs carry a capture date."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SIZE = (480, 360)


@dataclass
class DupFolder:
    root: Path
    exact: list[set[str]] = field(default_factory=list)  # file names
    near: list[set[str]] = field(default_factory=list)
    burst: list[set[str]] = field(default_factory=list)
    alone: set[str] = field(default_factory=set)  # in no group


def picture(
    seed: int, shift: tuple[float, float] = (0, 0), layout: int | None = None
) -> Image.Image:
    """Seed decides the colours; `layout` (default: the seed) where the blobs are;
    `shift` moves them, as the next shot of a burst."""
    rng = np.random.default_rng(seed)
    w, h = SIZE
    a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    ramp = np.linspace(0, 1, w)[None, :, None]
    image = Image.fromarray((a * (1 - ramp) + b * ramp).repeat(h, axis=0).astype(np.uint8))
    colours = [tuple(int(c) for c in rng.integers(0, 256, 3)) for _ in range(5)]
    where = np.random.default_rng(seed if layout is None else 1000 + layout)
    draw = ImageDraw.Draw(image)
    for colour in colours:
        x, y = where.uniform(0.15, 0.85) * w + shift[0], where.uniform(0.15, 0.85) * h + shift[1]
        r = where.uniform(0.08, 0.16) * h
        draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
    return image


def save_jpeg(image: Image.Image, path: Path, when: datetime | None, quality: int = 92) -> None:
    exif = Image.Exif()
    if when is not None:
        exif.get_ifd(0x8769)[36867] = when.strftime("%Y:%m:%d %H:%M:%S")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="JPEG", quality=quality, exif=exif.tobytes())


def make_dup_folder(root: Path) -> DupFolder:
    folder = DupFolder(root)
    day = datetime(2023, 5, 1, 12, 0, 0)
    # Exact: a JPEG, and its decoded pixels again as PNG and lossless WebP.
    save_jpeg(picture(1), root / "trip.jpg", day)
    decoded = Image.open(root / "trip.jpg").convert("RGB")
    (root / "copies").mkdir()
    decoded.save(root / "copies" / "trip.png")
    decoded.save(root / "copies" / "trip.webp", lossless=True)
    folder.exact.append({"trip.jpg", "trip.png", "trip.webp"})
    # Near: one photo recompressed, resized, cropped (dates kept or stripped).
    base = picture(2)
    save_jpeg(base, root / "party.jpg", day + timedelta(days=3))
    save_jpeg(base, root / "edits" / "party_small.jpg", None, quality=55)
    save_jpeg(
        base.resize((300, 225)), root / "edits" / "party_resized.jpg", day + timedelta(days=3)
    )
    save_jpeg(base.crop((40, 20, 480, 340)), root / "edits" / "party_crop.jpg", None)
    folder.near.append({"party.jpg", "party_small.jpg", "party_resized.jpg", "party_crop.jpg"})
    # Burst: three shots two seconds apart, things moving.
    t = day + timedelta(days=10)
    for n in range(3):
        save_jpeg(picture(3, shift=(6 * n, 3 * n)), root / f"burst_{n}.jpg", t)
        t += timedelta(seconds=2)
    folder.burst.append({"burst_0.jpg", "burst_1.jpg", "burst_2.jpg"})
    # Look-alikes: the burst's place rearranged a day later; an unrelated shot a second
    # after the burst; and unrelated photos.
    save_jpeg(picture(3, layout=7), root / "same_place_later.jpg", day + timedelta(days=11))
    save_jpeg(picture(40), root / "turned_round.jpg", t + timedelta(seconds=1))
    for seed in range(50, 56):
        save_jpeg(picture(seed), root / "misc" / f"photo_{seed}.jpg", day + timedelta(days=seed))
    folder.alone = {"same_place_later.jpg", "turned_round.jpg"} | {
        f"photo_{s}.jpg" for s in range(50, 56)
    }
    return folder
