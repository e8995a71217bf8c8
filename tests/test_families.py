"""The training sweep's generated data-set families (bench/families.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from families import FAMILIES  # noqa: E402

N = 40


def test_at_least_four_families_with_defaults_in_range():
    assert len(FAMILIES) >= 4
    assert {"shapes", "scenes", "patterns", "glyphs"} <= set(FAMILIES)
    for name, fam in FAMILIES.items():
        assert fam.name == name
        assert 500 <= fam.n <= 5000
        assert fam.size >= 32
    assert len({fam.size for fam in FAMILIES.values()}) >= 3  # the sizes differ


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_family_is_deterministic_decodable_and_captioned(name, tmp_path):
    fam = FAMILIES[name]
    size = min(fam.size, 64)  # small images keep the test fast; the drawing still scales
    a = fam.generate(tmp_path / "a", N, seed=3, size=size)
    b = fam.generate(tmp_path / "b", N, seed=3, size=size)
    other = fam.generate(tmp_path / "c", N, seed=4, size=size)
    assert len(a) == N
    assert [s.caption for s in a] == [s.caption for s in b]
    assert [s.path.read_bytes() for s in a] == [s.path.read_bytes() for s in b]
    assert [s.caption for s in a] != [s.caption for s in other]
    assert all(s.caption.strip() and s.caption == " ".join(s.caption.split()) for s in a)
    assert len({s.caption for s in a}) >= 0.8 * N  # mostly distinct: retrieval is possible
    for s in a:
        with Image.open(s.path) as im:
            im.load()
            assert im.size == (size, size) and im.mode == "RGB"
    # Sample i depends only on (seed, i): a shorter run is a prefix of a longer one.
    short = fam.generate(tmp_path / "d", 5, seed=3, size=size)
    assert [s.caption for s in short] == [s.caption for s in a[:5]]


def test_default_size_is_the_family_size(tmp_path):
    fam = FAMILIES["patterns"]
    (s,) = fam.generate(tmp_path, 1, seed=0, size=fam.size)
    with Image.open(s.path) as im:
        assert im.size == (fam.size, fam.size)
