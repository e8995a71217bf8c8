"""Spaces the recogniser dropped, put back from the picture of the line.

PP-OCR's recogniser runs words together now and then ("netrabensumire" for "netraben
sumire"): 6-17% of the words of 24 px or more on three generated families of pictures
(bench/BENCHMARKS.md), so a search for the word as typed found it only through the
trigram fallback. Its CTC output still says where each letter sits along the line, and
the line's own pixels say where the ink stops: a run of blank columns between two
letters is a space when it is wider than SPACE_OF_HEIGHT of the ink's height, than
SPACE_OF_MEDIAN times the line's median blank run (wide letter spacing, monospaced
faces), and than SPACE_OF_KNOWN of the narrowest space the recogniser did read on the
line. Spaces are only ever added, never taken away.
"""

from __future__ import annotations

from typing import Any

import numpy as np

SPACE_OF_HEIGHT = 0.3
SPACE_OF_MEDIAN = 2.5
SPACE_OF_KNOWN = 0.75


class SpacedRecogniser:
    """Wraps RapidOCR's recogniser (its `text_rec`): asks it for the letters' positions,
    puts back the spaces, and answers as the plain recogniser does, (text, confidence)."""

    def __init__(self, recognise) -> None:
        self._recognise = recognise

    def __call__(self, crops, return_word_box: bool = False):
        crops = [crops] if isinstance(crops, np.ndarray) else list(crops)
        found, elapsed = self._recognise(crops, True)
        answers = []
        for crop, (text, confidence, *where) in zip(crops, found, strict=True):
            answers.append((respace(crop, text, where[0] if where else None), confidence))
        return answers, elapsed


def respace(crop: np.ndarray, text: str, where: Any) -> str:
    """`text` as recognised in `crop` (height × width × 3, the line upright), with spaces
    put back; `where` is RapidOCR's word-box answer: [time steps spanning the crop,
    words' letters, words' letters' time steps, ...]."""
    try:
        steps = float(where[0])
        letters = [c for word in where[1] for c in word]
        columns = [c for word in where[2] for c in word]
    except (TypeError, IndexError, ValueError):
        return text
    if not text or steps <= 0 or len(letters) != len(text) or len(columns) != len(text):
        return text
    width = crop.shape[1]
    xs = [(c + 0.5) / steps * width for c in columns]
    blanks, height = blank_runs(crop)
    if not blanks:
        return text
    widths = [right - left for left, right in blanks]
    read = [x for x, letter in zip(xs, letters) if letter == " "]
    known = [w for (left, right), w in zip(blanks, widths) if any(left <= x <= right for x in read)]
    least = max(
        SPACE_OF_HEIGHT * height,
        SPACE_OF_MEDIAN * float(np.median(widths)),
        SPACE_OF_KNOWN * min(known) if known else 0.0,
    )
    centres = [(left + right) / 2 for (left, right), w in zip(blanks, widths) if w >= least]
    out = []
    for i, letter in enumerate(letters):
        out.append(letter)
        between = i + 1 < len(letters) and letter != " " and letters[i + 1] != " "
        if between and any(xs[i] < c < xs[i + 1] for c in centres):
            out.append(" ")
    return "".join(out)


def blank_runs(crop: np.ndarray) -> tuple[list[tuple[int, int]], int]:
    """The runs of columns without ink between the line's first and last inked column
    ([start, end) each), and the height of the ink."""
    ink = _ink(crop)
    inked = ink.any(axis=0)
    rows = np.flatnonzero(ink.any(axis=1))
    xs = np.flatnonzero(inked)
    if len(xs) < 2:
        return [], 0
    inside = inked[xs[0] : xs[-1] + 1]
    edges = np.flatnonzero(np.diff(inside.astype(np.int8)))  # ink→blank, blank→ink
    starts, ends = edges[0::2] + 1, edges[1::2] + 1
    runs = [(int(s + xs[0]), int(e + xs[0])) for s, e in zip(starts, ends)]
    return runs, int(rows[-1] - rows[0] + 1)


def _ink(crop: np.ndarray) -> np.ndarray:
    """Which pixels are ink: Otsu's threshold on grey, ink being the smaller side."""
    grey = crop.astype(np.float32).mean(axis=2) if crop.ndim == 3 else crop.astype(np.float32)
    counts = np.bincount(grey.astype(np.uint8).ravel(), minlength=256).astype(np.float64)
    share = counts / counts.sum()
    below = np.cumsum(share)
    mean_below = np.cumsum(share * np.arange(256))
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mean_below[-1] * below - mean_below) ** 2 / (below * (1 - below))
    dark = grey <= int(np.argmax(np.nan_to_num(between)))
    return dark if dark.mean() < 0.5 else ~dark
