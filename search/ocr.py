"""Text in photos, read by PP-OCR (text detection, line direction, recognition) through
RapidOCR's ONNX models, which its wheel carries (the imgsearch[ocr] extra).

Chosen by measurement (bench/ocr_engines_bench.py): on 40 generated pictures of words,
PP-OCR found every word of 24 px or more and 93% of smaller ones, turned lines included,
where Tesseract 5 found 66% and 58% and no turned line (0.79 s a picture, 0.57 s).

Most photos hold no text, so a picture is first read small, with a detector more
sensitive than for reading: only where that reads a line with some confidence is it read
in full, at up to READ_SIDE on its longer side. The detector alone took the blobs of a
quarter of photo-like pictures for text (a full read each, 1-2 s); with the small read's
confidence, none of 24. The small read looks at GLANCE_SIDE (47 ms of a core for the
detector), and at PRESENCE_SIDE (174 ms) only where the glance detected a line it could
not read: a photo without text costs about 85 ms of a core, near what ViT-B/32 costs to
index it, where 800 px alone cost 3.5 times that. The price: pictures whose only text is
small (under about 1/50 of the picture's longer side) the detector may not see at the
glance (7 of 60 generated pictures of words of 16-72 px on 1600 px, none at 800 px).

The recogniser runs words together now and then; search.ocrspaces puts the spaces back
from the line's pixels.

Pictures reach it EXIF-upright; lines turned 90° are read by the recogniser from their
tall boxes, lines upside down by the direction classifier.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image

from search.ocrspaces import SpacedRecogniser

# A 12 MP photo is decoded for reading at this shorter side (JPEG DCT scaling makes that
# cheap), and the detector sees at most READ_SIDE on its longer side: words of 24 px on
# a 4000 px photo are still 12 px there.
DECODE_SIDE = 1500
READ_SIDE = 2000
GLANCE_SIDE = 512  # the presence pass looks here first...
PRESENCE_SIDE = 800  # ...and closer only where the detector saw a line it could not read
PRESENCE_DECODE_SIDE = 600  # the shorter side of a 4:3 photo at PRESENCE_SIDE
GLANCE_DECODE_SIDE = 360  # JPEG DCT scaling gives a 12 MP photo 500 × 375: a glance's size
PRESENCE_THRESHOLDS = {"det_thresh": 0.2, "det_box_thresh": 0.3}  # reading's: 0.3, 0.5
PRESENCE_CHARACTERS = 2  # a line read small needs this many letters or digits to count
MIN_CONFIDENCE = 0.5  # lines the recogniser is less sure of are dropped
MISSING = "reading text needs the ocr extra: pip install 'imgsearch[ocr]'"


@dataclass(frozen=True)
class TextLine:
    text: str
    box: tuple[float, float, float, float]  # left, top, right, bottom, as shares of the picture
    confidence: float


@functools.cache
def available() -> bool:
    try:
        import rapidocr_onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


class TextReader:
    """Reads pictures in any number of threads: each thread gets its own engine, whose
    ONNX sessions run single-threaded (the threads are the parallelism)."""

    def __init__(self) -> None:
        self._local = threading.local()

    def _engines(self):
        """(the presence test's detector, the full reader) of this thread."""
        engines = getattr(self._local, "engines", None)
        if engines is None:
            from rapidocr_onnxruntime import RapidOCR

            single = {"intra_op_num_threads": 1, "inter_op_num_threads": 1}
            engines = self._local.engines = (
                RapidOCR(
                    **single,
                    **PRESENCE_THRESHOLDS,
                    text_score=0.0,  # every line detected comes back: _legible judges
                    det_limit_side_len=PRESENCE_SIDE,
                    det_limit_type="max",
                ),
                RapidOCR(**single, max_side_len=READ_SIDE),
            )
            full = engines[1]
            full.text_rec = SpacedRecogniser(full.text_rec)
        return engines

    def has_text(self, image: Image.Image, closer: Callable[[], Image.Image] | None = None) -> bool:
        """Whether `image` (upright) holds a legible line, read small (the presence pass):
        at GLANCE_SIDE, and again at PRESENCE_SIDE only where the detector found a line
        there that it could not read (text too small to read at a glance). `closer` gives
        the picture decoded for that second look, where `image` is smaller."""
        for side in (GLANCE_SIDE, PRESENCE_SIDE):
            if side == PRESENCE_SIDE and closer is not None:
                image = closer()
            rgb = image if image.mode == "RGB" else image.convert("RGB")
            lines, _ = self._engines()[0](_within(rgb, side))
            if not lines:
                return False  # nothing there looks like a line of text
            if any(_legible(text, confidence) for _, text, confidence in lines):
                return True
        return False

    def read(self, image: Image.Image) -> list[TextLine]:
        """The lines of text in `image` (upright RGB), top to bottom: read in full, at up
        to READ_SIDE (ask has_text first: this costs 1-2 s where there is text)."""
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        rgb = _within(rgb, READ_SIDE)
        found, _ = self._engines()[1](rgb)
        width, height = rgb.size
        lines = []
        for points, text, confidence in found or []:
            text = " ".join(str(text).split())
            if not text or float(confidence) < MIN_CONFIDENCE:
                continue
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            box = (min(xs) / width, min(ys) / height, max(xs) / width, max(ys) / height)
            box = tuple(round(min(max(v, 0.0), 1.0), 4) for v in box)
            lines.append(TextLine(text, box, round(float(confidence), 3)))
        lines.sort(key=lambda line: (line.box[1], line.box[0]))
        return lines


def _legible(text: str, confidence: float) -> bool:
    letters = sum(c.isalnum() for c in str(text))
    return float(confidence) >= MIN_CONFIDENCE and letters >= PRESENCE_CHARACTERS


def _within(image: Image.Image, side: int) -> Image.Image:
    if max(image.size) <= side:
        return image
    smaller = image.copy()
    smaller.thumbnail((side, side), Image.Resampling.BILINEAR)
    return smaller


def dumps(lines: list[TextLine]) -> str:
    return json.dumps([[line.text, list(line.box), line.confidence] for line in lines])


def loads(raw: str | None) -> list[TextLine]:
    return [
        TextLine(text, tuple(box), confidence) for text, box, confidence in json.loads(raw or "[]")
    ]
