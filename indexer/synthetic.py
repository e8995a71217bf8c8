"""Captioned synthetic images for the offline demo and for training/benchmarking a small CLIP.

Every word in a caption is derived from what is actually drawn (shape, colour, size, position,
background), so a model trained from scratch can learn the text-image mapping from pixels.
The "shift" vocabulary swaps in unseen shapes and phrasings for a domain-shift benchmark.
"""

from __future__ import annotations

import csv
import math
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

# Saturated, mutually distant colours so that they survive JPEG and tiny resolutions.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 70, 230),
    "yellow": (245, 225, 30),
    "purple": (140, 40, 190),
    "orange": (250, 140, 20),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
}
KINDS: dict[str, tuple[str, ...]] = {
    "base": ("circle", "square", "triangle", "star", "cross", "ring"),
    "shift": ("heart", "moon", "arrow", "diamond", "hexagon"),
}
# Object centres as fractions of the image side.
POSITIONS: dict[str, tuple[float, float]] = {
    "left": (0.27, 0.5),
    "right": (0.73, 0.5),
    "top": (0.5, 0.27),
    "bottom": (0.5, 0.73),
    "center": (0.5, 0.5),
}
# Only opposite positions are paired so two large objects never overlap.
PAIRS = (("left", "right"), ("top", "bottom"))
RADIUS = {"small": 0.11, "large": 0.2}
TEXTURES = ("plain", "stripes", "noise")

WHERE = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
    "center": "in the center",
}
BACKGROUND = {
    "plain": "{c} background",
    "stripes": "striped {c} background",
    "noise": "noisy {c} background",
}
# {o}: "large red circle", {w}: "on the left", {b}: "a striped blue background";
# suffix 2 = second object. Object phrases start with small/large, so "a" is always right.
TEMPLATES: dict[str, dict[int, tuple[str, ...]]] = {
    "base": {
        1: (
            "a {o} {w} on {b}",
            "a {o} {w}",
            "{b} with a {o} {w}",
            "a picture of a {o} on {b}",
        ),
        2: (
            "a {o} {w} next to a {o2} {w2}",
            "a {o} {w} and a {o2} {w2} on {b}",
            "{b} with a {o} and a {o2}",
        ),
    },
    "shift": {
        1: (
            "there is a {o} {w}, drawn over {b}",
            "an image showing one {o} {w}",
            "one {o} placed {w} against {b}",
        ),
        2: (
            "two shapes: a {o} {w} and a {o2} {w2}",
            "a {o2} {w2} beside a {o} {w}, drawn over {b}",
        ),
    },
}


@dataclass(frozen=True)
class Sample:
    path: Path
    caption: str
    # kind, colour, size, position, background, texture; plus kind2, colour2, size2,
    # position2 when a second object is drawn.
    attrs: dict[str, str]


def generate(
    out_dir: Path,
    n: int,
    *,
    seed: int = 0,
    size: int = 64,
    vocab: str = "base",
    fmt: str = "png",
    progress: bool = False,
) -> list[Sample]:
    """Write ``n`` images named ``{i:05d}.png`` (or ``.jpg``) to ``out_dir`` and caption them.

    Sample ``i`` depends only on ``(seed, i)``, so a larger ``n`` extends a smaller run.
    """
    if vocab not in KINDS:
        raise ValueError(f"unknown vocab {vocab!r}; expected one of {sorted(KINDS)}")
    if fmt not in ("png", "jpeg"):
        raise ValueError(f"unknown fmt {fmt!r}; expected 'png' or 'jpeg'")
    if size < 16:
        raise ValueError("size must be at least 16 pixels for shapes to be recognisable")
    out_dir.mkdir(parents=True, exist_ok=True)
    suffix = ".png" if fmt == "png" else ".jpg"
    samples = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        attrs = _sample_attrs(rng, vocab)
        img = _render(rng, attrs, size)
        path = out_dir / f"{i:05d}{suffix}"
        img.save(path, format=fmt.upper(), quality=90)  # the PNG writer ignores quality
        samples.append(Sample(path, _caption(rng, attrs, vocab), attrs))
        if progress and ((i + 1) % 500 == 0 or i + 1 == n):
            print(f"\rsynthetic: {i + 1}/{n}", end="\n" if i + 1 == n else "", file=sys.stderr)
    return samples


def write_pairs(samples: Iterable[Sample], pairs_path: Path) -> None:
    """Write a CSV (``image,caption``) with image paths relative to the CSV's folder."""
    pairs_path.parent.mkdir(parents=True, exist_ok=True)
    base = pairs_path.parent.resolve()
    with pairs_path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "caption"])
        for s in samples:
            rel = Path(os.path.relpath(s.path.resolve(), base)).as_posix()
            writer.writerow([rel, s.caption])


def _pick(rng: np.random.Generator, options: Iterable[str]) -> str:
    options = tuple(options)
    return options[int(rng.integers(len(options)))]


def _sample_attrs(rng: np.random.Generator, vocab: str) -> dict[str, str]:
    two = rng.random() < 0.35
    positions = PAIRS[int(rng.integers(len(PAIRS)))] if two else (_pick(rng, POSITIONS),)
    if two and rng.random() < 0.5:
        positions = positions[::-1]
    # Distinct colours for every drawn thing, background included, so nothing vanishes.
    colours = rng.permutation(list(COLOURS))[: len(positions) + 1]
    attrs = {"background": str(colours[0]), "texture": _pick(rng, TEXTURES)}
    for k, (pos, colour) in enumerate(zip(positions, colours[1:], strict=True)):
        tag = "" if k == 0 else str(k + 1)
        attrs[f"kind{tag}"] = _pick(rng, KINDS[vocab])
        attrs[f"colour{tag}"] = str(colour)
        attrs[f"size{tag}"] = _pick(rng, RADIUS)
        attrs[f"position{tag}"] = pos
    return attrs


def _caption(rng: np.random.Generator, attrs: dict[str, str], vocab: str) -> str:
    two = "kind2" in attrs
    background = BACKGROUND[attrs["texture"]].format(c=attrs["background"])
    fields = {
        "o": f"{attrs['size']} {attrs['colour']} {attrs['kind']}",
        "w": WHERE[attrs["position"]],
        "b": ("an " if background[0] in "aeiou" else "a ") + background,
    }
    if two:
        fields["o2"] = f"{attrs['size2']} {attrs['colour2']} {attrs['kind2']}"
        fields["w2"] = WHERE[attrs["position2"]]
    return _pick(rng, TEMPLATES[vocab][2 if two else 1]).format(**fields)


def _render(rng: np.random.Generator, attrs: dict[str, str], size: int) -> Image.Image:
    bg = np.array(COLOURS[attrs["background"]], dtype=np.float32)
    pixels = np.broadcast_to(bg, (size, size, 3)).copy()
    if attrs["texture"] == "stripes":
        # Shift stripes towards mid-grey so they show on both black and white backgrounds.
        period = max(4, size // 8)
        axis = int(rng.integers(2))
        band = (np.arange(size) // (period // 2)) % 2 == 1
        mask = band[:, None] if axis == 0 else band[None, :]
        pixels[np.broadcast_to(mask, (size, size))] = 0.6 * bg + 0.4 * 128
    elif attrs["texture"] == "noise":
        pixels += rng.normal(0.0, 28.0, size=(size, size, 3))
    img = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")

    for tag in ("", "2"):
        if f"kind{tag}" not in attrs:
            continue
        fx, fy = POSITIONS[attrs[f"position{tag}"]]
        # Small jitter so a position is a region, not a single pixel-exact spot.
        cx, cy = (np.array([fx, fy]) + rng.uniform(-0.03, 0.03, 2)) * size
        r = RADIUS[attrs[f"size{tag}"]] * size
        mask = Image.new("L", img.size, 0)
        _draw_shape(ImageDraw.Draw(mask), attrs[f"kind{tag}"], float(cx), float(cy), r)
        img.paste(COLOURS[attrs[f"colour{tag}"]], mask=mask)
    return img


def _polygon(
    cx: float, cy: float, radii: list[float], start_deg: float
) -> list[tuple[float, float]]:
    """Vertices at evenly spaced angles; alternating radii give stars and diamonds."""
    step = 2 * math.pi / len(radii)
    start = math.radians(start_deg)
    return [
        (cx + rr * math.cos(start + k * step), cy + rr * math.sin(start + k * step))
        for k, rr in enumerate(radii)
    ]


def _draw_shape(d: ImageDraw.ImageDraw, kind: str, cx: float, cy: float, r: float) -> None:
    """Draw ``kind`` in white on a mask; the caller fills it with the object's colour."""
    box = (cx - r, cy - r, cx + r, cy + r)
    if kind == "circle":
        d.ellipse(box, fill=255)
    elif kind == "ring":
        d.ellipse(box, outline=255, width=max(2, round(r * 0.35)))
    elif kind == "square":
        d.polygon(_polygon(cx, cy, [r * 1.25] * 4, 45), fill=255)
    elif kind == "triangle":
        d.polygon(_polygon(cx, cy + r * 0.15, [r * 1.15] * 3, -90), fill=255)
    elif kind == "star":
        d.polygon(_polygon(cx, cy, [r * 1.15, r * 0.45] * 5, -90), fill=255)
    elif kind == "cross":
        t = r * 0.35
        d.rectangle((cx - r, cy - t, cx + r, cy + t), fill=255)
        d.rectangle((cx - t, cy - r, cx + t, cy + r), fill=255)
    elif kind == "heart":
        h = r * 0.5
        d.ellipse((cx - r, cy - r * 0.8, cx, cy - r * 0.8 + 2 * h), fill=255)
        d.ellipse((cx, cy - r * 0.8, cx + r, cy - r * 0.8 + 2 * h), fill=255)
        d.polygon(
            [(cx - r * 0.97, cy - r * 0.15), (cx + r * 0.97, cy - r * 0.15), (cx, cy + r)], fill=255
        )
    elif kind == "moon":
        d.ellipse(box, fill=255)
        d.ellipse((cx - r * 0.45, cy - r, cx + r * 1.55, cy + r), fill=0)
    elif kind == "arrow":
        t = r * 0.28
        d.rectangle((cx - r, cy - t, cx + r * 0.1, cy + t), fill=255)
        d.polygon(
            [(cx + r * 0.1, cy - r * 0.8), (cx + r, cy), (cx + r * 0.1, cy + r * 0.8)], fill=255
        )
    elif kind == "diamond":
        d.polygon(_polygon(cx, cy, [r * 1.15, r * 0.75] * 2, -90), fill=255)
    elif kind == "hexagon":
        d.polygon(_polygon(cx, cy, [r * 1.1] * 6, 0), fill=255)
    else:
        raise ValueError(f"unknown shape {kind!r}")
