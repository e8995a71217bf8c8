"""Sanity checks for the hostile-tree generator itself (decode behaviour is tested elsewhere)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from imagetree import (
    DATETIME_ORIGINAL_TAG,
    EXIF_DATE,
    EXIF_IFD_TAG,
    ORIENTATION_TAG,
    HostileTree,
    make_hostile_tree,
    make_jpeg,
    make_png,
)
from PIL import Image, ImageOps


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> HostileTree:
    return make_hostile_tree(tmp_path_factory.mktemp("hostile"))


def test_all_listed_files_exist(tree: HostileTree) -> None:
    for path in [*tree.good, *tree.bad, *tree.unsupported, *tree.ignored]:
        assert path.is_file(), path
        assert tree.root in path.parents


def test_good_files_decode(tree: HostileTree) -> None:
    for path in tree.good:
        with Image.open(path) as img:
            img.load()
            assert 48 <= img.width <= 320 and 48 <= img.height <= 320, path


def test_good_files_are_distinct(tree: HostileTree) -> None:
    contents = [p.read_bytes() for p in tree.good]
    assert len(set(contents)) == len(contents)


def test_expected_kinds_present(tree: HostileTree) -> None:
    names = {p.relative_to(tree.root).as_posix() for p in tree.good}
    assert {"PHOTO.JPG", "a/IMG_1.jpg", "b/IMG_1.jpg", "l1/l2/l3/l4/l5/deep.jpg"} <= names
    assert {p.suffix.lower() for p in tree.good} >= {".jpg", ".jpeg", ".png", ".webp", ".gif"}
    # Odd names are only skipped where the filesystem forbids them; Linux allows all.
    assert len(tree.good) + len(tree.skipped_names) == 21
    if os.name == "posix":
        assert {
            "café ñ 日本.jpg",
            '"><img src=x onerror=alert(1)>.jpg',
            "-starts-with-dash.jpg",
        } <= names


def test_special_images(tree: HostileTree) -> None:
    modes = {}
    for role in ("cmyk", "png16", "rgba", "palette", "grayscale"):
        with Image.open(tree.roles[role]) as img:
            modes[role] = img.mode
    assert modes == {
        "cmyk": "CMYK",
        "png16": "I;16",
        "rgba": "RGBA",
        "palette": "P",
        "grayscale": "L",
    }

    with Image.open(tree.roles["animated_gif"]) as img:
        assert img.n_frames == 2

    with Image.open(tree.roles["exif_rotated"]) as img:
        assert img.getexif()[ORIENTATION_TAG] == 6
        assert img.size == (96, 64)
        assert ImageOps.exif_transpose(img).size == (64, 96)

    with Image.open(tree.roles["exif_date"]) as img:
        assert img.getexif().get_ifd(EXIF_IFD_TAG)[DATETIME_ORIGINAL_TAG] == EXIF_DATE

    with Image.open(tree.roles["rgba"]) as img:
        alpha = img.getchannel("A").getextrema()
        assert alpha[0] == 0 and alpha[1] == 255


def test_bad_files_fail_as_labelled(tree: HostileTree) -> None:
    reasons = {p.name: r for p, r in tree.bad.items()}
    assert reasons == {
        "truncated.jpg": "truncated",
        "empty.jpg": "empty",
        "notes.jpg": "not an image",
        "huge.png": "too large",
    }
    for path in tree.bad:
        # DecompressionBombError (huge.png) subclasses neither, so catch it explicitly.
        with pytest.raises((OSError, Image.DecompressionBombError)), Image.open(path) as img:
            img.load()
    assert (tree.root / "empty.jpg").stat().st_size == 0
    assert (tree.root / "huge.png").stat().st_size < 200


def test_ignored_files(tree: HostileTree) -> None:
    rels = {p.relative_to(tree.root).parts[0] for p in tree.ignored}
    assert rels == {
        ".git",
        "@eaDir",
        ".Trashes",
        "$RECYCLE.BIN",
        ".hidden.jpg",
        "System Volume Information",
        "._IMG_1.JPG",
        ".DS_Store",
        "readme.txt",
    }
    for path in tree.ignored:
        if path.suffix == ".jpg":
            with Image.open(path) as img:  # real images: only their location excludes them
                img.load()


def test_symlink_cycles(tree: HostileTree) -> None:
    if os.name == "posix":
        assert len(tree.symlinks) == 2
    for link in tree.symlinks:
        assert link.is_symlink()
        # Each link points at a strict ancestor of its own folder, so following it loops.
        assert link.resolve() in link.parent.resolve().parents


def test_deterministic(tmp_path: Path) -> None:
    first = make_hostile_tree(tmp_path / "one")
    second = make_hostile_tree(tmp_path / "two")
    for a, b in zip(first.good + list(first.bad), second.good + list(second.bad), strict=True):
        assert a.relative_to(first.root) == b.relative_to(second.root)
        assert a.read_bytes() == b.read_bytes(), a.name


def test_helpers(tmp_path: Path) -> None:
    jpg = make_jpeg(tmp_path / "x" / "a.jpg", seed=1)
    png = make_png(tmp_path / "b.png", seed=2, size=(64, 48), mode="RGBA")
    with Image.open(jpg) as img:
        assert (img.format, img.size) == ("JPEG", (96, 72))
    with Image.open(png) as img:
        assert (img.format, img.size, img.mode) == ("PNG", (64, 48), "RGBA")
    assert make_jpeg(tmp_path / "c.jpg", seed=1).read_bytes() == jpg.read_bytes()
    assert make_jpeg(tmp_path / "d.jpg", seed=3).read_bytes() != jpg.read_bytes()
