"""Words embedded in photos: IPTC, XMP and EXIF, as the indexer reads them."""

from __future__ import annotations

import pytest
from keywords_files import write_photo
from PIL import Image

from search.imageio import read_header
from search.keywords import MAX_WORDS, embedded_words


def words(path) -> set[str]:
    return set(read_header(path).keywords.splitlines())


def test_each_kind_of_metadata_is_read(tmp_path):
    path = write_photo(
        tmp_path / "a.jpg",
        iptc=["wedding", "Málaga"],
        iptc_caption="cutting the cake",
        xmp_subjects=["beach &amp; sea", "holiday"],
        description="Sunset over Lisbon",
        xp_keywords=["grandma", "garden"],
    )
    assert words(path) == {
        "wedding",
        "Málaga",
        "cutting the cake",
        "beach & sea",
        "holiday",
        "Sunset over Lisbon",
        "grandma garden",
    }


def test_a_plain_photo_has_none(tmp_path):
    png = tmp_path / "c.png"
    Image.new("RGB", (8, 8)).save(png)
    assert words(write_photo(tmp_path / "b.jpg")) == words(png) == set()


def test_repeats_are_kept_once_and_the_total_is_capped(tmp_path):
    path = write_photo(tmp_path / "d.jpg", iptc=["x" * 3000, "x" * 3000, "y" * 3000])
    text = read_header(path).keywords
    assert text.startswith("x" * 3000 + "\ny")
    assert len(text) == MAX_WORDS


@pytest.mark.parametrize(
    "packet",
    [b"<dc:subject><rdf:li>unclosed", b"\xff\xfe<<<>>>", b"<dc:title>" + b"a" * (2 << 20)],
)
def test_broken_or_huge_xmp_is_skipped_not_raised(tmp_path, packet):
    with Image.open(write_photo(tmp_path / "e.jpg", description="kept")) as img:
        img.info["xmp"] = packet
        assert "kept" in embedded_words(img, img.getexif())
