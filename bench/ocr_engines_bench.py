"""OCR engines compared (issue 16): PP-OCR through RapidOCR (ONNX models inside the
`rapidocr-onnxruntime` wheel) against Debian's Tesseract 5 with its English data, on
generated pictures of words with known text.

Words from a fixed vocabulary (with digits and accented letters) are drawn in DejaVu fonts
at 14-64 px onto plain, gradient and photo-like (noise and blobs) backgrounds, some lines
turned 90° or 180°. Word recall: the share of drawn words found (case- and
accent-insensitive, whole words as the lexical index matches them), for words of 24 px and more, and for
smaller ones; time per picture (1600 × 1200) on this machine, both engines at their
defaults on 2 cores.

    .venv/bin/python bench/ocr_engines_bench.py [--pictures 40] [--seed 0]

Tesseract runs only where the `tesseract` program is installed (apt install tesseract-ocr).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from ocr_bench import background, fold  # the same backgrounds, the same word folding
from ocrfiles import font
from PIL import Image, ImageDraw

FACES = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf")
VOCABULARY = [
    "invoice",
    "receipt",
    "total",
    "lisbon",
    "garden",
    "coffee",
    "station",
    "museum",
    "ticket",
    "parking",
    "exit",
    "bakery",
    "pharmacy",
    "library",
    "platform",
    "warning",
    "street",
    "market",
    "harbour",
    "meeting",
    "agenda",
    "quarterly",
    "budget",
    "whiteboard",
    "2023",
    "2019",
    "42.50",
    "17:45",
    "café",
    "münchen",
    "façade",
    "señor",
]
SIZE = (1600, 1200)


def picture(rng: np.random.Generator) -> tuple[Image.Image, list[tuple[str, int]]]:
    """A picture and its (word, pixel height) list."""
    image = background(rng, SIZE)
    drawn = []
    y = 40
    while y < SIZE[1] - 100:
        px = int(rng.choice([14, 18, 24, 32, 48, 64]))
        face = font(px, FACES[rng.integers(len(FACES))])
        words = [
            str(w) for w in rng.choice(VOCABULARY, size=int(rng.integers(1, 4)), replace=False)
        ]
        line = " ".join(words)
        box = face.getbbox(line)
        mean = np.asarray(image.crop((0, y, SIZE[0], y + px * 2))).mean()
        ink = (10, 10, 10) if mean > 128 else (250, 250, 250)
        strip = Image.new("RGBA", (box[2] + 20, box[3] + 20), (0, 0, 0, 0))
        ImageDraw.Draw(strip).text((10, 10), line, font=face, fill=ink + (255,))
        turn = int(rng.choice([0, 0, 0, 90, 180]))
        strip = strip.rotate(turn, expand=True)
        x = int(rng.uniform(20, max(21, SIZE[0] - strip.width - 20)))
        if y + strip.height > SIZE[1] - 20:
            break
        image.paste(strip, (x, y), strip)
        drawn += [(w, px) for w in words]
        y += strip.height + int(rng.uniform(20, 80))
    return image, drawn


def rapidocr_reader():
    from rapidocr_onnxruntime import RapidOCR

    engine = RapidOCR()

    def read(path: Path) -> str:
        result, _ = engine(str(path))
        return " ".join(r[1] for r in result or [])

    return read


def tesseract_reader():
    if shutil.which("tesseract") is None:
        return None

    def read(path: Path) -> str:
        # Page segmentation 11 (sparse text, any order) with orientation detection off: it
        # finds lines anywhere on a photo; turned lines it does not read at all.
        out = subprocess.run(
            ["tesseract", str(path), "-", "--psm", "11"],
            capture_output=True,
            text=True,
            check=False,
        )
        return out.stdout

    return read


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pictures", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; {args.pictures} pictures")
    readers = {"rapidocr (PP-OCR)": rapidocr_reader(), "tesseract 5": tesseract_reader()}
    with tempfile.TemporaryDirectory() as tmp:
        pictures = []
        for n in range(args.pictures):
            image, drawn = picture(rng)
            path = Path(tmp) / f"{n}.png"
            image.save(path)
            pictures.append((path, drawn))
        for name, read in readers.items():
            if read is None:
                print(f"{name}: not installed")
                continue
            found = {"large": [0, 0], "small": [0, 0]}
            started = time.perf_counter()
            for path, drawn in pictures:
                # As the lexical index will match: whole words, case and accents folded.
                read_words = {fold(w) for w in re.findall(r"[\w.:]+", read(path))}
                for word, px in drawn:
                    size = "large" if px >= 24 else "small"
                    found[size][1] += 1
                    found[size][0] += fold(word) in read_words
            per = (time.perf_counter() - started) / len(pictures)
            large, small = found["large"], found["small"]
            print(
                f"{name:18} word recall ≥24 px {large[0] / large[1]:.3f} ({large[1]} words)"
                f"  <24 px {small[0] / small[1]:.3f} ({small[1]})  {per:.2f} s a picture"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
