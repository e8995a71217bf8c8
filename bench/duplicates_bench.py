"""Duplicates told apart (issue 15): exact copies, edits and bursts on generated libraries
with known groups, and the time to group 100,000 images.

Each library holds photos (JPEG with a capture date) of three families with different
statistics: "shapes" (flat colours on a smooth background), "texture" (fractal noise,
high frequency everywhere) and "dim" (low contrast, dark, noisy, as indoor phone shots).
Around them:
- exact copies: the decoded pixels saved again as PNG and as lossless WebP;
- edits (near): recompressed JPEG (q 45-70), resized to 50-80%, cropped 5-15% off one to
  four sides, brightness/contrast retouched, lossy WebP; some with the date stripped;
- bursts: 3-5 shots of one scene 0.3-3 s apart, objects and camera moving a little;
- look-alikes that must stay apart: the same place with things moved, minutes to days
  later, and a different scene shot seconds after another (the camera turned round).

Files are decoded as the indexer does (load_image at the model's size) to make their
signatures; precision and recall are counted over pairs, per kind.

    .venv/bin/python bench/duplicates_bench.py [--photos 120] [--seeds 3] [--scale 100000]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime, timedelta
from itertools import combinations
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from search.catalog.store import Catalog  # noqa: E402
from search.duplicates import grouping  # noqa: E402
from search.duplicates.groups import duplicate_groups  # noqa: E402
from search.duplicates.signature import SIZE, signature  # noqa: E402
from search.imageio import load_image, pixel_digest  # noqa: E402

MIN_SIDE = 224  # the tiny and ViT-B models' input: what the indexer decodes to
FAMILIES = ("shapes", "texture", "dim")
KINDS = ("exact", "near", "burst")


# -- scenes -------------------------------------------------------------------------------
def smooth_field(rng: np.random.Generator, size: tuple[int, int], cells: int) -> np.ndarray:
    w, h = size
    grid = rng.uniform(0, 255, (cells, cells, 3)).astype(np.uint8)
    return np.asarray(Image.fromarray(grid).resize((w, h), Image.Resampling.BICUBIC), np.float32)


def fractal(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    w, h = size
    out = np.zeros((h, w, 3), np.float32)
    for octave, weight in ((4, 0.5), (16, 0.25), (64, 0.15), (256, 0.1)):
        out += weight * smooth_field(rng, size, octave)
    return out


class Scene:
    """A place with things in it; `shot` photographs it, with moves and camera shake."""

    def __init__(self, rng: np.random.Generator, family: str):
        self.family = family
        self.size = [(640, 480), (480, 640), (800, 600), (600, 600)][rng.integers(4)]
        w, h = self.size
        self.background = (
            fractal(rng, self.size) if family == "texture" else smooth_field(rng, self.size, 3)
        )
        self.things = [
            (
                rng.uniform(0.1, 0.9) * w,
                rng.uniform(0.1, 0.9) * h,
                rng.uniform(0.05, 0.18) * min(w, h),
                tuple(int(c) for c in rng.integers(0, 256, 3)),
                int(rng.integers(3)),
            )
            for _ in range(rng.integers(3, 7))
        ]

    def rearranged(self, rng: np.random.Generator) -> Scene:
        """The same place later: same background and things, moved about."""
        other = Scene.__new__(Scene)
        other.family, other.size, other.background = self.family, self.size, self.background
        w, h = self.size
        other.things = [
            (rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * h, r, c, k)
            for _, _, r, c, k in self.things
        ]
        return other

    def shot(self, rng: np.random.Generator, motion: float = 0.0) -> Image.Image:
        w, h = self.size
        dx, dy = rng.normal(0, motion * w), rng.normal(0, motion * h)
        shift = np.roll(self.background, (int(dy), int(dx)), axis=(0, 1))
        image = Image.fromarray(np.clip(shift, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        for x, y, r, colour, kind in self.things:
            x += dx + rng.normal(0, 2 * motion * w)
            y += dy + rng.normal(0, 2 * motion * h)
            box = (x - r, y - r, x + r, y + r)
            if kind == 0:
                draw.ellipse(box, fill=colour)
            elif kind == 1:
                draw.rectangle(box, fill=colour)
            else:
                draw.polygon([(x, y - r), (x + r, y + r), (x - r, y + r)], fill=colour)
        arr = np.asarray(image, np.float32)
        if self.family == "dim":
            arr = arr * 0.35 + 20
        noise = 9.0 if self.family == "dim" else 3.0
        arr += rng.normal(0, noise, arr.shape)
        return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


# -- files ----------------------------------------------------------------------------------
def exif_bytes(when: datetime | None) -> bytes:
    exif = Image.Exif()
    if when is not None:
        exif.get_ifd(0x8769)[36867] = when.strftime("%Y:%m:%d %H:%M:%S")
    return exif.tobytes()


def save_jpeg(image: Image.Image, path: Path, when: datetime | None, quality: int = 92) -> None:
    image.save(path, format="JPEG", quality=quality, exif=exif_bytes(when))


def edit(rng: np.random.Generator, image: Image.Image) -> Image.Image:
    """One retouch of a photo, of the kinds people make before sharing."""
    kind = rng.integers(4)
    if kind == 0:  # crop 5-15% off one to four sides
        w, h = image.size
        cut = rng.uniform(0.05, 0.15)
        sides = rng.permutation(4)[: rng.integers(1, 5)]
        box = [0, 0, w, h]
        for side in sides:
            box[side] += (-1 if side >= 2 else 1) * int(cut * (w if side % 2 == 0 else h))
        image = image.crop(tuple(box))
    elif kind == 1:  # resize
        f = rng.uniform(0.5, 0.8)
        image = image.resize((int(image.width * f), int(image.height * f)), Image.LANCZOS)
    elif kind == 2:  # retouch
        image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.9, 1.1))
        image = ImageEnhance.Contrast(image).enhance(rng.uniform(0.9, 1.15))
    return image  # kind 3: recompressed only (below)


def build(root: Path, family: str, photos: int, seed: int) -> dict[str, list[list[str]]]:
    """Writes the library; returns the true groups per kind, as lists of file names."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    truth: dict[str, list[list[str]]] = defaultdict(list)
    start = datetime(2024, 1, 1)
    n = 0

    def name(ext: str) -> str:
        nonlocal n
        n += 1
        return f"{n:05d}.{ext}"

    for p in range(photos):
        scene = Scene(rng, family)
        when = start + timedelta(days=int(rng.integers(0, 365)), seconds=int(rng.integers(86400)))
        role = p % 6
        if role == 4:  # a burst
            frames, t = [], when
            for _ in range(rng.integers(3, 6)):
                f = name("jpg")
                save_jpeg(scene.shot(rng, motion=0.01), root / f, t)
                frames.append(f)
                t += timedelta(seconds=float(rng.uniform(1, 3)))
            truth["burst"].append(frames)
            continue
        base = scene.shot(rng)
        original = name("jpg")
        save_jpeg(base, root / original, when)
        if role == 0:  # exact copies
            decoded = Image.open(root / original).convert("RGB")
            copies = [original]
            copies.append(name("png"))
            decoded.save(root / copies[-1], format="PNG")
            if rng.random() < 0.5:
                copies.append(name("webp"))
                decoded.save(root / copies[-1], format="WEBP", lossless=True)
            truth["exact"].append(copies)
        elif role in (1, 2):  # edits
            versions = [original]
            for _ in range(rng.integers(1, 4)):
                edited = edit(rng, base)
                keep_date = rng.random() < 0.7
                if rng.random() < 0.25:
                    versions.append(name("webp"))
                    edited.save(root / versions[-1], format="WEBP", quality=75)
                else:
                    versions.append(name("jpg"))
                    save_jpeg(
                        edited, root / versions[-1], when if keep_date else None,
                        quality=int(rng.integers(45, 71)),
                    )  # fmt: skip
            truth["near"].append(versions)
        elif role == 3:  # the same place, things moved, later
            later = when + timedelta(minutes=float(rng.uniform(5, 60 * 24 * 30)))
            save_jpeg(scene.rearranged(rng).shot(rng), root / name("jpg"), later)
        elif role == 5:  # another scene seconds later (the camera turned round)
            other = Scene(rng, family)
            save_jpeg(other.shot(rng), root / name("jpg"), when + timedelta(seconds=4))
    return truth


# -- measuring ------------------------------------------------------------------------------
def read_library(root: Path):
    names = sorted(os.listdir(root))
    sigs, sizes, taken = [], [], []
    for f in names:
        d = load_image(root / f, min_side=MIN_SIDE)
        sigs.append(np.frombuffer(signature(d.image), np.uint8))
        sizes.append((d.width, d.height))
        taken.append(np.nan if d.taken_at is None else d.taken_at.timestamp())
    return names, np.stack(sigs), np.array(sizes), np.array(taken)


def pairs_of(groups) -> set[tuple[str, str]]:
    return {tuple(sorted(p)) for g in groups for p in combinations(g, 2)}


def score(truth: dict, found: dict) -> dict[str, tuple[float, float]]:
    out = {}
    for kind in KINDS:
        want, got = pairs_of(truth.get(kind, [])), pairs_of(found.get(kind, []))
        hit = len(want & got)
        out[kind] = (hit / len(got) if got else 1.0, hit / len(want) if want else 1.0)
    return out


def run_library(family: str, photos: int, seed: int, tmp: Path) -> dict:
    root = tmp / f"{family}-{seed}"
    truth = build(root, family, photos, seed)
    # Exact is defined by the pixels: two edits made alike (the same recompression twice)
    # are exact copies too, so the truth is taken from full decodes, not from the recipe.
    by_pixels = defaultdict(list)
    for f in sorted(os.listdir(root)):
        by_pixels[pixel_digest(load_image(root / f).image)].append(f)
    truth["exact"] = [g for g in by_pixels.values() if len(g) > 1]
    names, sigs, sizes, taken = read_library(root)
    ids = np.arange(len(names))
    decodes = []

    def same_pixels(a: int, b: int) -> bool:
        decodes.append((a, b))
        return pixel_digest(load_image(root / names[a]).image) == pixel_digest(
            load_image(root / names[b]).image
        )

    t0 = time.perf_counter()
    groups = grouping.find_groups(ids, sigs, sizes, taken, same_pixels)
    elapsed = time.perf_counter() - t0
    found = defaultdict(list)
    for g in groups:
        found[g.kind].append([names[i] for i in g.ids])
    return {
        "family": family,
        "seed": seed,
        "images": len(names),
        "scores": score(truth, found),
        "seconds": elapsed,
        "full_decodes": len(decodes),
    }


def scale_run(n: int, tmp: Path, seed: int = 0) -> dict:
    """Finding the groups of n catalogued images end to end (the catalog read, the search,
    the groups stored), from signatures of smooth random pictures: 5% of them with an
    edited copy (noise on the signature) and dates over a year. No file is decoded: the
    copies are not pixel-identical, so none is a candidate for a full decode (their cost
    is per exact candidate, reported by the libraries above)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (n, 4, 4, 3)).astype(np.uint8)
    sigs = np.empty((n, SIZE), np.uint8)
    for k in range(n):  # the same recipe as signature(), from a smooth 4×4 picture
        picture = Image.fromarray(base[k]).resize((64, 64), Image.BICUBIC)
        sigs[k] = np.frombuffer(signature(picture), np.uint8)
    copies = rng.choice(n, n // 10, replace=False)
    src, dst = copies[: n // 20], copies[n // 20 :]
    noise = rng.normal(0, 4, (len(dst), SIZE))
    sigs[dst] = np.clip(sigs[src].astype(np.float32) + noise, 0, 255).astype(np.uint8)
    taken = [datetime(2024, 1, 1) + timedelta(seconds=float(s)) for s in rng.uniform(0, 3e7, n)]
    for a, b in zip(src, dst, strict=True):
        taken[b] = taken[a]
    catalog = Catalog.open(tmp / "scale.db")
    root = catalog.add_root(str(tmp / "photos"))
    now = datetime(2025, 1, 1)
    with catalog.engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO images (root_id, path, size, mtime_ns, content_hash, width, height, "
            "taken_at, date, indexed_at, signature) VALUES (?, ?, 1, 1, 'x', 640, 480, ?, ?, ?, ?)",
            [
                (root.id, f"/photos/{k}.jpg", taken[k], taken[k], now, sigs[k].tobytes())
                for k in range(n)
            ],
        )
    t0 = time.perf_counter()
    groups = duplicate_groups(catalog, 100.0)
    elapsed = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = duplicate_groups(catalog, 100.0)  # nothing changed: read back
    stored = time.perf_counter() - t0
    catalog.close()
    assert len(again) == len(groups)
    return {"n": n, "seconds": elapsed, "stored_seconds": stored, "groups": len(groups)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=120, help="photos per library")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--scale", type=int, default=100_000, help="images in the timing run")
    args = ap.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for family in FAMILIES:
            for seed in range(args.seeds):
                r = run_library(family, args.photos, seed, Path(tmp))
                rows.append(r)
                cells = "  ".join(f"{k} P {p:.3f} R {q:.3f}" for k, (p, q) in r["scores"].items())
                print(f"{family:8s} seed {seed}  {r['images']:4d} images  {cells}  "
                      f"{r['seconds']:.2f} s, {r['full_decodes']} full decodes", flush=True)  # fmt: skip
    for kind in KINDS:
        ps = [r["scores"][kind][0] for r in rows]
        rs = [r["scores"][kind][1] for r in rows]
        print(f"{kind:6s} precision min {min(ps):.3f} mean {np.mean(ps):.3f}   "
              f"recall min {min(rs):.3f} mean {np.mean(rs):.3f}")  # fmt: skip
    if args.scale:
        with tempfile.TemporaryDirectory() as tmp:
            s = scale_run(args.scale, Path(tmp))
        print(f"grouping {s['n']:,} catalogued images: {s['seconds']:.1f} s "
              f"({s['groups']} groups); read back unchanged: {s['stored_seconds']:.2f} s")  # fmt: skip


if __name__ == "__main__":
    main()
