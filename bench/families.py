"""Generated data-set families for the training sweep (issue 9, `bench/train_sweep.py`).

The first trainer was tuned on one generator (indexer/synthetic.py) and diverged on data it
had never seen; these families differ on purpose in image size, clutter, objects per image,
vocabulary and caption style, so that training defaults are judged on more than one kind
of data:

- ``shapes``: indexer.synthetic (base vocabulary): one or two shapes, template captions.
- ``scenes``: procedural landscapes (time of day, sun/moon, terrain, trees/houses, weather)
  with natural sentences of varying length.
- ``patterns``: frame-filling textures (stripes, checks, dots, rings, ...) under heavy noise,
  with terse keyword captions or one sentence.
- ``glyphs``: two to five digits, letters and icons on cluttered blurred-blob backgrounds,
  with counts and spatial relations in the captions.

Every caption word is derived from what is drawn, and sample ``i`` depends only on
``(seed, i)`` (a larger ``n`` extends a smaller run), as in indexer.synthetic.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from indexer import synthetic
from indexer.synthetic import Sample, write_pairs

__all__ = ["FAMILIES", "Family", "Sample", "generate", "write_pairs"]

Generator = Callable[..., list[Sample]]


@dataclass(frozen=True)
class Family:
    name: str
    generate: Generator  # generate(out_dir, n, *, seed, size) -> list[Sample]
    n: int  # default number of training pairs
    size: int  # default image side in pixels
    about: str  # one line for the benchmark report


def _write(
    out_dir: Path,
    n: int,
    seed: int,
    salt: int,
    make: Callable[[np.random.Generator], tuple[Image.Image, str, dict[str, str]]],
) -> list[Sample]:
    out_dir.mkdir(parents=True, exist_ok=True)
    samples = []
    for i in range(n):
        img, caption, attrs = make(np.random.default_rng([salt, seed, i]))
        path = out_dir / f"{i:05d}.png"
        img.save(path, format="PNG")
        samples.append(Sample(path, caption, attrs))
    return samples


def _pick(rng: np.random.Generator, options):
    options = tuple(options)
    return options[int(rng.integers(len(options)))]


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


NUMBERS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five"}


def _noise(rng: np.random.Generator, pixels: np.ndarray, sigma: float) -> np.ndarray:
    return pixels + rng.normal(0.0, sigma, size=pixels.shape).astype(np.float32)


def _to_image(pixels: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


# --------------------------------------------------------------------------- shapes


def generate_shapes(out_dir: Path, n: int, *, seed: int, size: int = 64) -> list[Sample]:
    return synthetic.generate(out_dir, n, seed=seed, size=size, vocab="base")


# --------------------------------------------------------------------------- scenes

SKIES = {  # top and horizon colours of the sky gradient
    "day": ((60, 120, 220), (170, 210, 250)),
    "dusk": ((70, 40, 120), (250, 140, 60)),
    "night": ((5, 8, 30), (30, 40, 90)),
}
TERRAINS = ("mountains", "hills", "sea", "desert")
WEATHERS = ("clear", "rain", "fog", "snow")
TERRAIN_NOUN = {
    "mountains": ("mountain", "mountains"),
    "hills": ("hill", "hills"),
    "sea": ("sea", "sea"),
    "desert": ("desert", "desert"),
}
TERRAIN_PLACE = {
    "mountains": ("in the mountains", "among the mountains"),
    "hills": ("in the hills", "on the green hills"),
    "sea": ("by the sea", "on the shore of the sea"),
    "desert": ("in the desert", "on the sand dunes"),
}
WEATHER_ADJ = {"clear": "", "rain": "rainy", "fog": "foggy", "snow": "snowy"}
WEATHER_CLAUSE = {
    "clear": "",
    "rain": "in the rain",
    "fog": "in thick fog",
    "snow": "in the falling snow",
}
TIME_PHRASE = {
    "day": ("during the day", "on a bright day", "in daylight"),
    "dusk": ("at dusk", "at sunset", "in the evening"),
    "night": ("at night", "in the dark of night"),
}
SKY_PHRASE = {
    ("day", "sun"): ("under a blue sky with the sun", "under a sunny sky"),
    ("day", "none"): ("under a blue sky", "under an empty blue sky"),
    ("dusk", "sun"): ("with the setting sun", "under an orange sky with a low sun"),
    ("dusk", "none"): ("under an orange dusk sky", "under a purple evening sky"),
    ("night", "full moon"): ("under a night sky with a full moon", "lit by a full moon"),
    ("night", "crescent moon"): ("under a crescent moon", "under a night sky with a thin moon"),
    ("night", "none"): ("under a dark starry sky", "under a moonless night sky"),
    ("day", "overcast"): ("under a grey sky", "under a cloudy sky"),
    ("dusk", "overcast"): ("under a dim evening sky", "under a grey dusk sky"),
    ("night", "overcast"): ("under a dark cloudy sky", "under a black sky"),
}


def _count_phrase(count: int, singular: str, plural: str) -> str:
    return _a(singular) if count == 1 else f"{NUMBERS[count]} {plural}"


def _scene_attrs(rng: np.random.Generator) -> dict[str, str]:
    time = _pick(rng, SKIES)
    light = {
        "day": ("sun", "none"),
        "dusk": ("sun", "none"),
        "night": ("full moon", "crescent moon", "none"),
    }[time]
    terrain = _pick(rng, TERRAINS)
    weather = _pick(rng, WEATHERS)
    if weather == "snow" and terrain in ("sea", "desert"):
        weather = "rain" if rng.random() < 0.5 else "clear"
    # Fog or rain hides the sun and moon: the sky in the caption must be the one drawn.
    body = "overcast" if weather in ("fog", "rain") else _pick(rng, light)
    trees = int(rng.choice([0, 0, 1, 2, 3]))
    houses = int(rng.choice([0, 0, 1, 2, 3]))
    return {
        "time": time,
        "sky": body,
        "terrain": terrain,
        "weather": weather,
        "trees": str(trees),
        "houses": str(houses),
        "peaks": str(int(rng.integers(1, 4))) if terrain == "mountains" else "0",
    }


def _scene_caption(rng: np.random.Generator, a: dict[str, str]) -> str:
    trees, houses = int(a["trees"]), int(a["houses"])
    things = []
    if houses:
        things.append(_count_phrase(houses, "house", "houses"))
    if trees:
        things.append(_count_phrase(trees, "tree", "trees"))
    if len(things) == 2 and rng.random() < 0.5:
        things.reverse()
    objects = " and ".join(things)
    adj = WEATHER_ADJ[a["weather"]]
    sing, plural = TERRAIN_NOUN[a["terrain"]]
    if a["terrain"] == "mountains" and a["peaks"] == "1":
        noun = _a(" ".join(p for p in (adj, sing) if p))
    elif a["terrain"] in ("mountains", "hills"):
        noun = " ".join(p for p in (adj, plural) if p)
    else:
        noun = " ".join(p for p in ("the", adj, sing) if p)
    place = _pick(rng, TERRAIN_PLACE[a["terrain"]])
    time = _pick(rng, TIME_PHRASE[a["time"]])
    sky = _pick(rng, SKY_PHRASE[(a["time"], a["sky"])])
    weather = WEATHER_CLAUSE[a["weather"]]
    # Captions name what is drawn, some more of it than others (lengths vary from 4 to
    # ~16 words); ones that leave out the trees and houses are kept for scenes without.
    if objects:
        options = [
            f"{objects} {place} {time}",
            " ".join(p for p in (objects, place, weather, time) if p),
            f"{objects} {place} {sky}",
            " ".join(p for p in (f"a {a['time']} scene with", objects, place, weather) if p),
            f"{noun} with {objects} {sky}",
        ]
    else:
        options = [
            f"{noun} {sky}",
            f"{noun} {time}",
            " ".join(p for p in (f"an empty landscape {place}", weather, time) if p),
            f"{noun} {sky} {time}" if a["sky"] in ("none", "overcast") else f"{noun} {sky}",
        ]
    return " ".join(_pick(rng, options).split())


def _render_scene(rng: np.random.Generator, a: dict[str, str], size: int) -> Image.Image:
    s = size
    horizon = int(s * rng.uniform(0.52, 0.62))
    top, bottom = (np.array(c, np.float32) for c in SKIES[a["time"]])
    t = np.linspace(0.0, 1.0, s, dtype=np.float32)[:, None, None]
    pixels = np.broadcast_to(top * (1 - t) + bottom * t, (s, s, 3)).copy()
    img = _to_image(pixels)
    d = ImageDraw.Draw(img)
    night = a["time"] == "night"
    if night and a["weather"] == "clear":
        for _ in range(int(rng.integers(8, 20))):
            x, y = rng.uniform(0, s), rng.uniform(0, horizon * 0.8)
            d.point((x, y), fill=(230, 230, 200))
    r = s * rng.uniform(0.07, 0.1)
    cx, cy = s * rng.uniform(0.2, 0.8), s * rng.uniform(0.12, 0.3)
    if a["sky"] == "sun":
        colour = (255, 230, 60) if a["time"] == "day" else (255, 120, 40)
        if a["time"] == "dusk":
            cy = horizon - r * 0.6
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    elif a["sky"] == "full moon":
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(235, 235, 215))
    elif a["sky"] == "crescent moon":
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(235, 235, 215))
        sky_here = tuple(int(v) for v in pixels[int(cy), int(cx)])
        d.ellipse((cx - r * 0.5, cy - r * 1.1, cx + r * 1.5, cy + r * 0.9), fill=sky_here)

    dark = 0.45 if night else (0.8 if a["time"] == "dusk" else 1.0)

    def shade(c: tuple[int, int, int]) -> tuple[int, int, int]:
        return tuple(int(v * dark) for v in c)

    snow = a["weather"] == "snow"
    terrain = a["terrain"]
    ground = horizon  # where trees and houses stand
    if terrain == "mountains":
        peaks = int(a["peaks"])
        xs = (np.arange(peaks) + rng.uniform(0.3, 0.7, peaks)) / peaks * s
        d.rectangle((0, horizon, s, s), fill=shade((90, 110, 80)))
        for x in xs:
            h = s * rng.uniform(0.3, 0.45)
            w = s * rng.uniform(0.3, 0.45)
            apex = (x, horizon - h)
            d.polygon(
                [(x - w, horizon + 1), apex, (x + w, horizon + 1)], fill=shade((110, 100, 95))
            )
            if snow:
                k = 0.35
                d.polygon(
                    [(x - w * k, horizon - h * (1 - k)), apex, (x + w * k, horizon - h * (1 - k))],
                    fill=shade((250, 250, 250)),
                )
        ground = int(s * 0.82)
    elif terrain == "hills":
        colour = (240, 240, 245) if snow else (60, 150, 60)
        for k in range(2):
            y0 = horizon - s * 0.08 + k * s * 0.1
            cx2 = s * rng.uniform(0.1, 0.9)
            w = s * rng.uniform(0.5, 0.8)
            c = tuple(int(v * (0.85 + 0.15 * k)) for v in colour)
            d.ellipse((cx2 - w, y0, cx2 + w, y0 + s * 0.7), fill=shade(c))
        d.rectangle((0, horizon + s * 0.15, s, s), fill=shade(colour))
        ground = int(s * 0.85)
    elif terrain == "sea":
        d.rectangle((0, horizon, s, s), fill=shade((20, 70, 150)))
        for _ in range(int(rng.integers(6, 12))):
            x, y = rng.uniform(0, s), rng.uniform(horizon + 2, s * 0.85)
            d.line((x, y, x + s * 0.08, y), fill=shade((170, 200, 240)), width=1)
        ground = int(s * 0.88)
        d.rectangle((0, ground, s, s), fill=shade((220, 200, 140)))
    else:  # desert
        d.rectangle((0, horizon, s, s), fill=shade((225, 190, 110)))
        for _ in range(2):
            cx2, w = s * rng.uniform(0, 1), s * rng.uniform(0.3, 0.5)
            d.ellipse(
                (cx2 - w, horizon - s * 0.08, cx2 + w, horizon + s * 0.3),
                fill=shade((205, 165, 90)),
            )
        ground = int(s * 0.85)

    # Trees and houses stand in slots along the ground line, so none hides another.
    items = ["tree"] * int(a["trees"]) + ["house"] * int(a["houses"])
    slots = rng.permutation(6)[: len(items)]
    for item, slot in zip(rng.permutation(items), slots):
        x = (slot + 0.5) / 6 * s + rng.uniform(-0.02, 0.02) * s
        y = ground + rng.uniform(-0.02, 0.03) * s
        u = s * 0.05
        if item == "tree":
            d.rectangle((x - u * 0.25, y - u * 1.2, x + u * 0.25, y), fill=shade((100, 60, 30)))
            leaf = (230, 240, 240) if snow else (20, 110, 40)
            d.polygon([(x - u, y - u), (x, y - u * 3.4), (x + u, y - u)], fill=shade(leaf))
        else:
            wall = (200, 60, 50) if rng.random() < 0.5 else (230, 220, 190)
            d.rectangle((x - u, y - u * 1.6, x + u, y), fill=shade(wall))
            roof = (250, 250, 250) if snow else (90, 40, 30)
            d.polygon(
                [(x - u * 1.3, y - u * 1.6), (x, y - u * 2.8), (x + u * 1.3, y - u * 1.6)],
                fill=shade(roof),
            )
            window = (250, 220, 90) if night or a["time"] == "dusk" else (60, 80, 110)
            d.rectangle((x - u * 0.4, y - u * 1.1, x + u * 0.1, y - u * 0.6), fill=window)

    if a["weather"] == "rain":
        for _ in range(int(s * 0.8)):
            x, y = rng.uniform(-0.2 * s, s), rng.uniform(0, s)
            d.line((x, y, x + s * 0.03, y + s * 0.08), fill=(170, 180, 200), width=1)
        out = np.asarray(img, np.float32) * 0.85
        img = _to_image(out)
    elif a["weather"] == "snow":
        for _ in range(int(s * 0.9)):
            x, y = rng.uniform(0, s), rng.uniform(0, s)
            rr = rng.uniform(0.5, 1.3)
            d.ellipse((x - rr, y - rr, x + rr, y + rr), fill=(250, 250, 250))
    elif a["weather"] == "fog":
        out = np.asarray(img, np.float32)
        level = 200.0 if not night else 110.0
        out = out * 0.4 + level * 0.6
        img = _to_image(out)
    return _to_image(_noise(rng, np.asarray(img, np.float32), 6.0))


def generate_scenes(out_dir: Path, n: int, *, seed: int, size: int = 96) -> list[Sample]:
    def make(rng):
        attrs = _scene_attrs(rng)
        img = _render_scene(rng, attrs, size)
        return img, _scene_caption(rng, attrs), attrs

    return _write(out_dir, n, seed, 2, make)


# --------------------------------------------------------------------------- patterns

PATTERN_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (35, 165, 60),
    "blue": (35, 75, 225),
    "yellow": (245, 220, 40),
    "purple": (140, 50, 190),
    "orange": (250, 140, 25),
    "pink": (245, 130, 185),
    "cyan": (40, 200, 220),
    "brown": (125, 75, 35),
    "black": (20, 20, 20),
    "white": (240, 240, 240),
}
PATTERNS = (
    "stripes",
    "checkerboard",
    "polka dots",
    "gradient",
    "rings",
    "zigzag",
    "noise",
    "grid",
)
SCALES = ("fine", "coarse")
DIRECTIONS = ("horizontal", "vertical", "diagonal")


def _pattern_attrs(rng: np.random.Generator) -> dict[str, str]:
    kind = _pick(rng, PATTERNS)
    names = list(rng.permutation(list(PATTERN_COLOURS)))
    two = rng.random() < 0.7
    # A gradient has no period: its "scale" is whether it is smooth or in bands.
    scales = ("smooth", "banded") if kind == "gradient" else SCALES
    attrs = {"kind": kind, "colour": str(names[0]), "scale": _pick(rng, scales)}
    if two:
        attrs["colour2"] = str(names[1])
    if kind in ("stripes", "zigzag", "gradient"):
        attrs["direction"] = _pick(rng, DIRECTIONS[:2] if kind != "stripes" else DIRECTIONS)
    return attrs


def _pattern_caption(rng: np.random.Generator, a: dict[str, str]) -> str:
    colours = a["colour"] + (f" and {a['colour2']}" if "colour2" in a else "")
    kind, scale = a["kind"], a["scale"]
    direction = a.get("direction", "")
    if rng.random() < 0.5:  # keyword style
        words = [" ".join(p for p in (direction, kind) if p), colours, scale]
        order = rng.permutation(3) if rng.random() < 0.3 else range(3)
        return ", ".join(words[int(k)] for k in order)
    thing = {
        "stripes": "stripes",
        "checkerboard": "checkerboard",
        "polka dots": "polka dots",
        "gradient": "gradient",
        "rings": "concentric rings",
        "zigzag": "zigzag lines",
        "noise": "noise texture",
        "grid": "grid of lines",
    }[kind]
    mono = "colour2" not in a
    if kind == "polka dots":
        sentence = f"{scale} {a['colour']} polka dots" + (
            f" on {a['colour2']}" if not mono else " on a pale background"
        )
    elif kind == "gradient":
        sentence = f"a {scale} {direction} gradient from {a['colour']} to " + (
            a["colour2"] if not mono else f"light {a['colour']}"
        )
    else:
        shades = (
            f"{a['colour']} and {a['colour2']}" if not mono else f"light and dark {a['colour']}"
        )
        sentence = " ".join(p for p in (scale, shades, direction, thing) if p)
        plural = thing.endswith("s")
        sentence = _pick(rng, (sentence if plural else _a(sentence), "a pattern of " + sentence))
    return sentence


def _render_pattern(rng: np.random.Generator, a: dict[str, str], size: int) -> Image.Image:
    s = size
    c1 = np.array(PATTERN_COLOURS[a["colour"]], np.float32)
    if "colour2" in a:
        c2 = np.array(PATTERN_COLOURS[a["colour2"]], np.float32)
    else:  # one colour word: the pattern is drawn in a light and a dark shade of it
        c1, c2 = c1 * 0.55, c1 * 0.45 + 255 * 0.55
    fine = a["scale"] == "fine"
    period = (rng.uniform(0.06, 0.1) if fine else rng.uniform(0.18, 0.3)) * s
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    phase = rng.uniform(0, period)
    xx, yy = xx + phase, yy + rng.uniform(0, period)
    kind = a["kind"]
    direction = a.get("direction", "")
    if kind == "stripes":
        coord = {"horizontal": yy, "vertical": xx, "diagonal": (xx + yy) / math.sqrt(2)}[direction]
        if direction == "diagonal" and rng.random() < 0.5:
            coord = (xx - yy) / math.sqrt(2)
        t = (coord // (period / 2)) % 2
    elif kind == "checkerboard":
        t = ((xx // (period / 2)) + (yy // (period / 2))) % 2
    elif kind == "polka dots":
        gx = (xx % period) - period / 2
        gy = (yy % period) - period / 2
        t = 1.0 - ((gx**2 + gy**2) < (period * 0.3) ** 2)
    elif kind == "gradient":
        coord = xx - phase if direction == "horizontal" else yy - (yy[0, 0])
        t = np.clip(coord / s, 0, 1)
        if a["scale"] == "banded":
            t = np.floor(t * 4.999) / 4
    elif kind == "rings":
        cx, cy = s * rng.uniform(0.3, 0.7), s * rng.uniform(0.3, 0.7)
        r = np.hypot(xx - phase - cx, yy - yy[0, 0] - cy)
        t = (r // (period / 2)) % 2
    elif kind == "zigzag":
        along, across = (xx, yy) if direction == "horizontal" else (yy, xx)
        tri = np.abs((along % period) - period / 2)
        t = ((across + tri) // (period / 2)) % 2
    elif kind == "noise":
        cells = max(2, int(s / (period / 2)))
        small = rng.random((cells, cells)).astype(np.float32)
        t = (
            np.asarray(
                Image.fromarray((small * 255).astype(np.uint8)).resize((s, s), Image.NEAREST),
                np.float32,
            )
            / 255.0
        )
        t = (t > 0.5).astype(np.float32)
    elif kind == "grid":
        w = max(1.0, period * 0.18)
        t = 1.0 - (((xx % period) < w) | ((yy % period) < w))
    else:
        raise ValueError(kind)
    t = t.astype(np.float32)[..., None]
    pixels = c1 * (1 - t) + c2 * t
    # Heavy texture: low-frequency brightness mottling plus strong per-pixel noise.
    blot = rng.normal(0, 1, (6, 6)).astype(np.float32)
    blot = np.asarray(
        Image.fromarray(((blot * 40) + 128).clip(0, 255).astype(np.uint8)).resize(
            (s, s), Image.BICUBIC
        ),
        np.float32,
    )
    pixels = pixels + (blot[..., None] - 128) * 0.5
    return _to_image(_noise(rng, pixels, float(rng.uniform(15, 35))))


def generate_patterns(out_dir: Path, n: int, *, seed: int, size: int = 128) -> list[Sample]:
    def make(rng):
        attrs = _pattern_attrs(rng)
        img = _render_pattern(rng, attrs, size)
        return img, _pattern_caption(rng, attrs), attrs

    return _write(out_dir, n, seed, 3, make)


# --------------------------------------------------------------------------- glyphs

GLYPH_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (225, 25, 25),
    "green": (20, 175, 45),
    "blue": (25, 60, 235),
    "yellow": (250, 225, 20),
    "purple": (150, 30, 200),
    "orange": (255, 135, 10),
    "white": (250, 250, 250),
    "black": (10, 10, 10),
}
DIGITS = tuple("0123456789")
LETTERS = tuple("AEHKMRTX")
ICONS = {  # singular, plural
    "square": ("square", "squares"),
    "dot": ("dot", "dots"),
    "triangle": ("triangle", "triangles"),
    "star": ("star", "stars"),
}
GRID = 3  # objects sit in the cells of a GRID × GRID layout
RELATIONS = ("above", "below", "to the left of", "to the right of")


@lru_cache(maxsize=8)
def _font(px: int):
    try:
        return ImageFont.load_default(size=px)
    except (TypeError, OSError, ImportError):  # no FreeType: the bitmap font, scaled later
        return None


def _glyph_mask(char: str, px: int) -> Image.Image:
    """A px × px mask with `char` filling most of it."""
    font = _font(px * 2)
    if font is None:
        small = Image.new("L", (8, 12), 0)
        ImageDraw.Draw(small).text((1, 0), char, fill=255, font=ImageFont.load_default())
        return small.resize((px, px), Image.NEAREST)
    big = Image.new("L", (px * 3, px * 3), 0)
    ImageDraw.Draw(big).text((px // 2, 0), char, fill=255, font=font, stroke_width=max(1, px // 10))
    box = big.getbbox() or (0, 0, px, px)
    crop = big.crop(box)
    w, h = crop.size
    k = px * 0.9 / max(w, h)
    crop = crop.resize((max(1, round(w * k)), max(1, round(h * k))), Image.BILINEAR)
    mask = Image.new("L", (px, px), 0)
    mask.paste(crop, ((px - crop.width) // 2, (px - crop.height) // 2))
    return mask


def _icon_mask(kind: str, px: int) -> Image.Image:
    mask = Image.new("L", (px, px), 0)
    d = ImageDraw.Draw(mask)
    c, r = px / 2, px * 0.42
    if kind == "square":
        d.rectangle((c - r * 0.85, c - r * 0.85, c + r * 0.85, c + r * 0.85), fill=255)
    elif kind == "dot":
        d.ellipse((c - r * 0.8, c - r * 0.8, c + r * 0.8, c + r * 0.8), fill=255)
    elif kind == "triangle":
        d.polygon([(c - r, c + r * 0.8), (c, c - r), (c + r, c + r * 0.8)], fill=255)
    elif kind == "star":
        pts = [
            (
                c + rr * math.cos(-math.pi / 2 + k * math.pi / 5),
                c + rr * math.sin(-math.pi / 2 + k * math.pi / 5),
            )
            for k, rr in enumerate([r * 1.05, r * 0.45] * 5)
        ]
        d.polygon(pts, fill=255)
    return mask


def _group_phrase(g: dict[str, str]) -> str:
    count, colour, kind = int(g["count"]), g["colour"], g["kind"]
    if kind in ICONS:
        sing, plural = ICONS[kind]
        return _count_phrase(count, f"{colour} {sing}", f"{colour} {plural}")
    noun = f"letter {kind}" if kind in LETTERS else kind
    if count == 1:
        return _a(f"{colour} {noun}")
    return f"{NUMBERS[count]} {colour} {noun}s"


def _glyph_attrs(rng: np.random.Generator) -> tuple[dict[str, str], list[dict], str]:
    total = int(rng.integers(2, 6))
    n_groups = 1 if total >= 2 and rng.random() < 0.15 else (2 if rng.random() < 0.7 else 3)
    n_groups = min(n_groups, total)
    # Split `total` objects into groups of 1+ (glyph groups at most 2, icon groups 4).
    counts = [1] * n_groups
    for _ in range(total - n_groups):
        counts[int(rng.integers(n_groups))] += 1
    colours = rng.permutation(list(GLYPH_COLOURS))
    groups = []
    used = set()
    for k, count in enumerate(counts):
        while True:
            family = rng.random()
            if count <= 2 and family < 0.3:
                kind = _pick(rng, DIGITS)
            elif count <= 2 and family < 0.5:
                kind = _pick(rng, LETTERS)
            else:
                kind = _pick(rng, ICONS)
            if kind not in used:
                break
        used.add(kind)
        groups.append({"count": str(count), "colour": str(colours[k]), "kind": kind})
    relation = _pick(rng, RELATIONS) if len(groups) == 2 and rng.random() < 0.6 else "and"
    attrs = {"objects": str(sum(int(g["count"]) for g in groups)), "relation": relation}
    return attrs, groups, relation


def _cells_for(rng: np.random.Generator, groups: list[dict], relation: str) -> list[list[int]]:
    """Cell indices (row * GRID + col) per group; relations hold by construction."""
    cells = list(range(GRID * GRID))
    if relation == "and":
        order = [int(c) for c in rng.permutation(cells)]
        out, at = [], 0
        for g in groups:
            n = int(g["count"])
            out.append(order[at : at + n])
            at += n
        return out
    first, second = int(groups[0]["count"]), int(groups[1]["count"])
    # The first group goes in the first row (or column) it needs, the second past it.
    rows_first = math.ceil(first / GRID)
    if relation in ("above", "below"):
        lines = [[r * GRID + c for c in range(GRID)] for r in range(GRID)]
    else:
        lines = [[r * GRID + c for r in range(GRID)] for c in range(GRID)]
    if relation in ("below", "to the right of"):
        lines = lines[::-1]
    near = [c for line in lines[:rows_first] for c in line]
    far = [c for line in lines[rows_first:] for c in line]
    a = [int(c) for c in rng.permutation(near)[:first]]
    b = [int(c) for c in rng.permutation(far)[:second]]
    return [a, b]


def _render_glyphs(
    rng: np.random.Generator, groups: list[dict], cells: list[list[int]], size: int
) -> Image.Image:
    s = size
    # Muted clutter (pulled towards grey) under saturated objects: busy, but readable.
    base = (rng.uniform(40, 220, 3) * 0.5 + 64).astype(np.float32)
    img = _to_image(np.broadcast_to(base, (s, s, 3)).copy())
    d = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(6, 14))):  # photo-like clutter: blurred colour blobs
        x, y = rng.uniform(-0.1, 1.1, 2) * s
        rx, ry = rng.uniform(0.08, 0.35, 2) * s
        colour = tuple(int(v * 0.55 + 58) for v in rng.uniform(0, 255, 3))
        d.ellipse((x - rx, y - ry, x + rx, y + ry), fill=colour)
    img = img.filter(ImageFilter.GaussianBlur(radius=s * 0.06))
    pixels = _noise(rng, np.asarray(img, np.float32), 10.0)
    img = _to_image(pixels)

    cell = s / GRID
    for g, where in zip(groups, cells):
        colour = GLYPH_COLOURS[g["colour"]]
        edge = (0, 0, 0) if sum(colour) > 300 else (255, 255, 255)
        for c in where:
            row, col = divmod(c, GRID)
            px = int(cell * rng.uniform(0.75, 0.9))
            mask = (
                _glyph_mask(g["kind"], px) if g["kind"] not in ICONS else _icon_mask(g["kind"], px)
            )
            x = int(col * cell + (cell - px) / 2 + rng.uniform(-0.06, 0.06) * cell)
            y = int(row * cell + (cell - px) / 2 + rng.uniform(-0.06, 0.06) * cell)
            # A contrasting outline keeps the object readable on any blob.
            outline = mask.filter(ImageFilter.MaxFilter(3))
            img.paste(edge, (x, y), outline)
            img.paste(colour, (x, y), mask)
    return img


def generate_glyphs(out_dir: Path, n: int, *, seed: int, size: int = 96) -> list[Sample]:
    def make(rng):
        attrs, groups, relation = _glyph_attrs(rng)
        cells = _cells_for(rng, groups, relation)
        img = _render_glyphs(rng, groups, cells, size)
        phrases = [_group_phrase(g) for g in groups]
        if relation != "and":
            caption = f"{phrases[0]} {relation} {phrases[1]}"
        elif len(phrases) == 1:
            caption = phrases[0]
        else:
            caption = ", ".join(phrases[:-1]) + " and " + phrases[-1]
        if rng.random() < 0.2:
            caption = _pick(rng, ("a busy picture with ", "a cluttered photo of ")) + caption
        for k, g in enumerate(groups):
            tag = "" if k == 0 else str(k + 1)
            attrs.update({f"kind{tag}": g["kind"], f"colour{tag}": g["colour"]})
            attrs[f"count{tag}"] = g["count"]
        return img, caption, attrs

    return _write(out_dir, n, seed, 4, make)


# --------------------------------------------------------------------------- registry

FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("shapes", generate_shapes, 1000, 64, "1-2 shapes at named positions, templates"),
        Family("scenes", generate_scenes, 1200, 96, "landscapes, time/weather, sentences"),
        Family("patterns", generate_patterns, 600, 128, "noisy textures, keyword captions"),
        Family("glyphs", generate_glyphs, 2000, 96, "2-5 digits/letters/icons on clutter"),
    )
}


def generate(name: str, out_dir: Path, n: int | None = None, *, seed: int, size: int | None = None):
    """The family `name`'s pairs, with its default n and size unless given."""
    fam = FAMILIES[name]
    return fam.generate(out_dir, fam.n if n is None else n, seed=seed, size=size or fam.size)
