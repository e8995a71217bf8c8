"""Tests for the captioned synthetic dataset generator."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from indexer.synthetic import (
    COLOURS,
    KINDS,
    POSITIONS,
    RADIUS,
    TEXTURES,
    WHERE,
    Sample,
    generate,
    write_pairs,
)


def _assert_caption_matches(s: Sample, vocab: str) -> None:
    a = s.attrs
    assert a["kind"] in KINDS[vocab] and a["colour"] in COLOURS
    assert a["size"] in RADIUS and a["position"] in POSITIONS and a["texture"] in TEXTURES
    assert f"{a['size']} {a['colour']} {a['kind']}" in s.caption
    drawn = [a["colour"], a["background"]]
    if "kind2" in a:
        assert f"{a['size2']} {a['colour2']} {a['kind2']}" in s.caption
        assert {a["position"], a["position2"]} in ({"left", "right"}, {"top", "bottom"})
        drawn.append(a["colour2"])
    assert len(set(drawn)) == len(drawn), "object and background colours must differ"
    # Colours the image does not contain must not appear in the caption.
    for colour in set(COLOURS) - set(drawn):
        assert colour not in s.caption.split()


def test_files_and_captions(tmp_path: Path) -> None:
    samples = generate(tmp_path / "img", 60, seed=3)
    assert [s.path.name for s in samples] == [f"{i:05d}.png" for i in range(60)]
    assert sorted(p.name for p in (tmp_path / "img").iterdir()) == [s.path.name for s in samples]
    for s in samples:
        _assert_caption_matches(s, "base")
        with Image.open(s.path) as img:
            assert (img.format, img.mode, img.size) == ("PNG", "RGB", (64, 64))
    # Enough variety to be a training set: both layouts and every kind, colour and texture.
    assert any("kind2" in s.attrs for s in samples)
    assert any("kind2" not in s.attrs for s in samples)
    assert {s.attrs["kind"] for s in samples} == set(KINDS["base"])
    assert {s.attrs["colour"] for s in samples} == set(COLOURS)
    assert {s.attrs["texture"] for s in samples} == set(TEXTURES)


def test_deterministic(tmp_path: Path) -> None:
    a = generate(tmp_path / "a", 12, seed=7)
    b = generate(tmp_path / "b", 12, seed=7)
    c = generate(tmp_path / "c", 12, seed=8)
    assert [s.caption for s in a] == [s.caption for s in b]
    assert [s.attrs for s in a] == [s.attrs for s in b]
    assert [s.path.read_bytes() for s in a] == [s.path.read_bytes() for s in b]
    assert [s.caption for s in a] != [s.caption for s in c]
    # Sample i depends only on (seed, i): a shorter run is a prefix of a longer one.
    short = generate(tmp_path / "short", 5, seed=7)
    assert [s.path.read_bytes() for s in short] == [s.path.read_bytes() for s in a[:5]]


def test_object_colour_is_drawn(tmp_path: Path) -> None:
    # A single object in the centre on a plain background: the centre pixel is its colour
    # unless it is a ring (hollow), whose edge is checked instead.
    checked = 0
    for s in generate(tmp_path, 200, seed=11):
        a = s.attrs
        if "kind2" in a or a["position"] != "center" or a["texture"] != "plain":
            continue
        checked += 1
        with Image.open(s.path) as img:
            px = np.asarray(img, dtype=int)
        r = RADIUS[a["size"]] * 64
        y, x = (32, 32) if a["kind"] != "ring" else (32, round(32 + r * 0.85))
        patch = px[y - 1 : y + 2, x - 1 : x + 2].reshape(-1, 3)
        assert (np.abs(patch - COLOURS[a["colour"]]).max(axis=1) < 4).any(), s.caption
        assert np.abs(px[0, 0] - COLOURS[a["background"]]).max() < 4
    assert checked >= 5


def test_shift_vocab(tmp_path: Path) -> None:
    samples = generate(tmp_path, 40, seed=0, vocab="shift", size=48, fmt="jpeg")
    assert samples[0].path.name == "00000.jpg"
    assert not set(KINDS["shift"]) & set(KINDS["base"])
    for s in samples:
        _assert_caption_matches(s, "shift")
        with Image.open(s.path) as img:
            assert (img.format, img.size) == ("JPEG", (48, 48))


def test_position_words(tmp_path: Path) -> None:
    for s in generate(tmp_path, 30, seed=5):
        assert "{" not in s.caption, "unformatted template"
        positions = [s.attrs["position"], s.attrs.get("position2")]
        mentioned = [p for p, phrase in WHERE.items() if phrase in s.caption]
        assert set(mentioned) <= set(positions)


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="vocab"):
        generate(tmp_path, 1, vocab="nope")
    with pytest.raises(ValueError, match="fmt"):
        generate(tmp_path, 1, fmt="gif")
    assert generate(tmp_path / "none", 0) == []


def test_write_pairs(tmp_path: Path) -> None:
    samples = generate(tmp_path / "data" / "images", 8, seed=1)
    pairs = tmp_path / "data" / "pairs.csv"
    write_pairs(samples, pairs)
    with pairs.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == ["image", "caption"]
        rows = list(reader)
    assert [r["caption"] for r in rows] == [s.caption for s in samples]
    for row, s in zip(rows, samples, strict=True):
        assert not Path(row["image"]).is_absolute()
        assert row["image"] == f"images/{s.path.name}"
        assert (pairs.parent / row["image"]).resolve() == s.path.resolve()

    # A pairs file elsewhere gets ../ paths that still resolve.
    other = tmp_path / "elsewhere" / "pairs.csv"
    write_pairs(samples, other)
    with other.open(newline="", encoding="utf-8") as f:
        first = next(csv.DictReader(f))
    assert first["image"].startswith("../")
    assert (other.parent / first["image"]).resolve() == samples[0].path.resolve()
