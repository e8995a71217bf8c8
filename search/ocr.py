"""Text in photos, read by PP-OCR (text detection, line direction, recognition) through
RapidOCR's ONNX models, which its wheel carries (the imgsearch[ocr] extra).

Chosen by measurement (bench/ocr_engines_bench.py): on 40 generated pictures of words,
PP-OCR found every word of 24 px or more and 93% of smaller ones, turned lines included,
where Tesseract 5 found 66% and 58% and no turned line (0.79 s a picture, 0.57 s).

Most photos hold no text, so a picture is first read small, with a detector more
sensitive than for reading: only where that reads a line of three letters or more with
some confidence is it read in full, at up to READ_SIDE on its longer side. The detector
alone took the blobs of a quarter of photo-like pictures for text (a full read each,
1-2 s); with the small read's confidence, none of 24 but a blob's edge read "9.0", which
three letters rule out. The small read looks at GLANCE_SIDE (47 ms of a core for the
detector), and at PRESENCE_SIDE (174 ms) only where the glance detected a thin line it
could not read (small text; shapes taken for lines are thicker, and a closer look reads
them no better). While indexing, the glance runs on the pixels decoded for the model
where those are large enough (indexer.sync.textread): a 12 MP photo without text then
costs about 50 ms of a core more than indexing it (ViT-B/32: 90). The price: pictures
whose only text is small (under about 1/50 of the picture's longer side) the detector
may not see at the glance.

The recogniser runs words together now and then; search.ocrspaces puts the spaces back
from the line's pixels.

Pictures reach it EXIF-upright; lines turned 90° are read by the recogniser from their
tall boxes, lines upside down by the direction classifier.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import queue
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
# A line read small needs this many letters or digits to count: a blob's edge read "9.0"
# with confidence 0.91 cost one photo in 24 without text a full read (2-3 s of a core).
PRESENCE_CHARACTERS = 3
# The glance asks for a closer look only for lines at most this thick (px, at GLANCE_SIDE):
# text too small to read there. Small words' boxes measured 11-17 px on generated
# pictures of words; the shapes taken for lines on photos without text, 60-320 px, which
# a closer look reads no better.
CLOSER_THICKNESS = 32
SINGLE_THREAD = {"intra_op_num_threads": 1, "inter_op_num_threads": 1}
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


class Engines:
    """Engines lent to one call at a time, made as needed: as many as calls ran at once,
    whichever threads made them (an index run's decode threads glance, then its reading
    pass's threads read; each engine costs 0.1-0.2 s to make)."""

    def __init__(self, make: Callable[[], Callable]) -> None:
        self._make = make
        self._idle: queue.SimpleQueue = queue.SimpleQueue()

    @contextlib.contextmanager
    def lend(self):
        try:
            engine = self._idle.get_nowait()
        except queue.Empty:
            engine = self._make()
        try:
            yield engine
        finally:
            self._idle.put(engine)


def _presence_engine():
    from rapidocr_onnxruntime import RapidOCR

    return RapidOCR(
        **SINGLE_THREAD,
        **PRESENCE_THRESHOLDS,
        text_score=0.0,  # every line detected comes back: _legible judges
        det_limit_side_len=PRESENCE_SIDE,
        det_limit_type="max",
    )


def _full_engine():
    from rapidocr_onnxruntime import RapidOCR

    engine = RapidOCR(**SINGLE_THREAD, max_side_len=READ_SIDE)
    engine.text_rec = SpacedRecogniser(engine.text_rec)
    return engine


class TextReader:
    """Reads pictures in any number of threads, each call on an engine of its own whose
    ONNX sessions run single-threaded (the threads are the parallelism). The full reader
    is made only once a photo has text: a run of photos without any never pays for it."""

    def __init__(self) -> None:
        self.presence = Engines(_presence_engine)
        self.full = Engines(_full_engine)

    def _detect(self, image: Image.Image, side: int):
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        with self.presence.lend() as engine:
            lines, _ = engine(_within(rgb, side))
        return lines or []

    def has_text(self, image: Image.Image, closer: Callable[[], Image.Image] | None = None) -> bool:
        """Whether `image` (upright) holds a legible line, read small (the presence pass):
        at GLANCE_SIDE, and again at PRESENCE_SIDE only where the detector found a thin
        line there that it could not read (text too small to read at a glance). `closer`
        gives the picture decoded for that second look, where `image` is smaller."""
        seen = self.glance(image)
        if seen is not None:
            return seen
        image = closer() if closer is not None else image
        lines = self._detect(image, PRESENCE_SIDE)
        return any(_legible(text, confidence) for _, text, confidence in lines)

    def glance(self, image: Image.Image) -> bool | None:
        """The presence pass's first look, at GLANCE_SIDE: True (a legible line), False
        (nothing like a line of text), None (a thin line it could not read: look closer)."""
        lines = self._detect(image, GLANCE_SIDE)
        if any(_legible(text, confidence) for _, text, confidence in lines):
            return True
        if any(_thickness(points) <= CLOSER_THICKNESS for points, _, _ in lines):
            return None
        return False

    def read(self, image: Image.Image) -> list[TextLine]:
        """The lines of text in `image` (upright RGB), top to bottom: read in full, at up
        to READ_SIDE (ask has_text first: this costs 1-2 s where there is text)."""
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        rgb = _within(rgb, READ_SIDE)
        with self.full.lend() as engine:
            found, _ = engine(rgb)
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


def _thickness(points) -> float:
    """The shorter of a detected quadrilateral's two mean side lengths: a line's height,
    however it is turned."""
    (ax, ay), (bx, by), (cx, cy), (dx, dy) = points
    across = (math.dist((ax, ay), (bx, by)) + math.dist((cx, cy), (dx, dy))) / 2
    down = (math.dist((bx, by), (cx, cy)) + math.dist((dx, dy), (ax, ay))) / 2
    return min(across, down)


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
