"""Spaces put back where the recogniser ran words together (search.ocrspaces), on line
crops drawn in DejaVu faces, with the letters' CTC time steps computed from the font as
the recogniser reports them (one step a letter, at its centre)."""

from __future__ import annotations

import numpy as np
import pytest
from ocrfiles import font
from PIL import Image, ImageDraw

from search.ocrspaces import SpacedRecogniser, blank_runs, respace

FACES = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf")


def line(text: str, face: str, *, px=32, track=0.0, dark_ink=True, seed=0):
    """A crop of one line as the detector cuts it, and where the recogniser says each
    letter is: (crop, letters, time steps, steps spanning the crop)."""
    shape = font(px, face)
    rng = np.random.default_rng(seed)
    width = int(shape.getlength(text) + track * px * len(text) + px)
    paper = (225, 220, 205) if dark_ink else (40, 50, 70)
    base = np.array(paper, float) + rng.normal(0, 8, (int(px * 1.6), width, 3))
    crop = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(crop)
    x, centres = px / 2, []
    for ch in text:
        draw.text((x, px * 0.2), ch, font=shape, fill=(20, 20, 20) if dark_ink else (235, 235, 235))
        centres.append(x + shape.getlength(ch) / 2)
        x += shape.getlength(ch) + track * px
    steps = width / 8  # the recogniser's output: a step for every 8 columns
    return np.asarray(crop), centres, steps


def read_as(text: str, read: str, crop_centres_steps) -> str:
    """What respace makes of `read` (text with some of its spaces dropped)."""
    crop, centres, steps = crop_centres_steps
    kept, at = [], 0
    for ch, c in zip(text, centres):
        if at < len(read) and read[at] == ch:
            kept.append((ch, c))
            at += 1
    assert "".join(ch for ch, _ in kept) == read
    columns = [int(c / crop.shape[1] * steps) for _, c in kept]
    return respace(crop, read, [steps, [list(read)], [columns]])


@pytest.mark.parametrize("face", FACES)
@pytest.mark.parametrize("dark_ink", [True, False])
def test_words_run_together_get_their_space_back(face, dark_ink):
    text = "netraben sumire 44940"
    got = read_as(text, "netrabensumire44940", line(text, face, dark_ink=dark_ink))
    assert got == text


@pytest.mark.parametrize("face", FACES)
def test_wide_letter_spacing_does_not_split_a_word(face):
    text = "valmitra"
    assert read_as(text, text, line(text, face, track=0.12)) == text


def test_spaces_already_read_set_the_measure_for_the_line():
    # Monospaced letters leave wide gaps around narrow ones ("i", "r", "t"); the spaces the
    # recogniser did read show how wide a space is on this line.
    text = "valmitra corsure haltare"
    assert read_as(text, text, line(text, "DejaVuSansMono.ttf", px=40)) == text


def test_one_space_read_and_one_dropped():
    text = "lomone dissu loben"
    got = read_as(text, "lomone dissuloben", line(text, "DejaVuSerif.ttf"))
    assert got == text


def test_without_letter_positions_the_text_is_kept():
    crop, _, _ = line("kalo mire", "DejaVuSans.ttf")
    assert respace(crop, "kalomire", None) == "kalomire"
    assert respace(crop, "kalomire", [10.0, [["k"]], [[1]]]) == "kalomire"
    blank = np.full((40, 200, 3), 128, np.uint8)
    assert blank_runs(blank) == ([], 0)
    assert respace(blank, "ab", [25.0, [["a", "b"]], [[3, 20]]]) == "ab"


def test_the_wrapped_recogniser_answers_as_the_plain_one():
    text = "kalo mire"
    crop, centres, steps = line(text, "DejaVuSans-Bold.ttf")
    columns = [int(c / crop.shape[1] * steps) for ch, c in zip(text, centres) if ch != " "]
    calls = []

    def recognise(crops, return_word_box):
        calls.append(return_word_box)
        return [("kalomire", 0.93, [steps, [list("kalomire")], [columns], ["en&num"]])], 0.01

    answers, elapsed = SpacedRecogniser(recognise)(crop)
    assert answers == [("kalo mire", 0.93)] and elapsed == 0.01 and calls == [True]
