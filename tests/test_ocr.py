"""Text in photos: read when the library has it on (upright after EXIF, turned lines too),
found by typing a word, read once per version of a file, kept through renames, and never
a crash on hostile pictures."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from ocrfiles import words_picture
from PIL import Image
from test_cli import TINY, run

from indexer.sync.run import sync
from search import ocr
from search.errors import ConfigError
from search.query.searcher import SearchRequest
from webui import create_app


def name_of(lib, hit_id: int) -> str:
    return lib.catalog.image(hit_id).path.rsplit("/", 1)[1]


def first_hit(lib, word: str):
    hits = lib.searcher.search(SearchRequest(text=word, mode="text", k=5)).hits
    return hits[0] if hits else None


@pytest.fixture
def signs(library, tmp_path):
    root = tmp_path / "photos"
    root.mkdir()
    words_picture(["INVOICE 2023", "total 42.50"]).save(root / "receipt.png")
    words_picture(["NETRABENSUMIRE"], seed=4).save(root / "runon.png")  # words run together
    words_picture(["Lisbon harbour"], photo=True, seed=1).save(root / "sign.jpg", quality=92)
    # Turned on the picture itself: a line running bottom to top.
    words_picture(["PHARMACY"], size=(480, 200)).rotate(90, expand=True).save(root / "turned.png")
    # Stored sideways, shown upright by its EXIF orientation (6: turn 90° clockwise).
    exif = Image.Exif()
    exif[0x0112] = 6
    upright = words_picture(["MUSEUM tickets"], seed=2)
    upright.rotate(90, expand=True).save(root / "sideways.jpg", quality=92, exif=exif)
    Image.new("RGB", (640, 480), (120, 140, 160)).save(root / "plain.png")
    noise = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    Image.fromarray(noise).save(root / "noise.png")
    Image.new("RGB", (20000, 300), (200, 200, 200)).save(root / "strip.png")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    library.set_reads_text(True)
    report = sync(library, [str(root)], progress=False)
    return library, root, report


def test_words_in_photos_are_found_by_typing_them(signs):
    lib, _, report = signs
    assert report.text_read == 8 and report.failed == 1  # the broken file: a listed failure
    for word, name in (
        ("invoice", "receipt.png"),
        ("42.50", "receipt.png"),
        ("harbour", "sign.jpg"),
        ("pharmacy", "turned.png"),
        ("museum", "sideways.jpg"),
    ):
        hit = first_hit(lib, word)
        assert hit is not None and name_of(lib, hit.id) == name, word
        assert hit.matched == ("text",)
    hit = first_hit(lib, "invoice")
    assert "\x02INVOICE\x03" in hit.highlights["text"]
    # Inside a word, or inside words OCR ran together, and without the accents typed.
    for typed in ("voice", "hârbour", "isbon", "sumire"):
        hit = first_hit(lib, typed)
        assert hit is not None and hit.matched == ("text",), typed
    assert name_of(lib, first_hit(lib, "voice").id) == "receipt.png"
    assert "\x02" in first_hit(lib, "voice").highlights["text"]
    assert first_hit(lib, "zzq") is None
    # Hybrid (the default) ranks it first too.
    result = lib.searcher.search(SearchRequest(text="invoice 2023", k=3))
    assert name_of(lib, result.hits[0].id) == "receipt.png"
    # Pictures without text were read and hold none; the strip did not stop the run.
    metas = lib.catalog.images(range(1, 20))
    for name in ("strip.png", "plain.png", "noise.png"):
        (image_id,) = [i for i, m in metas.items() if m.path.endswith("/" + name)]
        assert lib.catalog.texts.lines(image_id) == [], name


def test_text_is_read_once_per_version_of_a_file_and_follows_renames(signs):
    lib, root, _ = signs
    assert sync(lib, [], progress=False).text_read == 0  # nothing changed: nothing read
    words_picture(["STATION exit"], seed=3).save(root / "receipt.png")
    report = sync(lib, [], progress=False)
    assert report.text_read == 1
    assert first_hit(lib, "invoice") is None
    assert name_of(lib, first_hit(lib, "station").id) == "receipt.png"
    shutil.move(root / "sign.jpg", root / "lisbon-sign.jpg")
    report = sync(lib, [], progress=False)
    assert report.moved == 1 and report.text_read == 0
    assert name_of(lib, first_hit(lib, "harbour").id) == "lisbon-sign.jpg"


def test_the_image_page_and_api_show_the_text(signs):
    lib, _, _ = signs
    hit = first_hit(lib, "invoice")
    client = create_app(library=lib).test_client()
    page = client.get(f"/images/{hit.id}").get_data(as_text=True)
    assert "Text in the photo" in page and "INVOICE 2023" in page
    assert page.count('class="textbox"') == len(lib.catalog.texts.lines(hit.id)) >= 2
    doc = client.get("/api/search?q=invoice&mode=text").get_json()
    assert doc["results"][0]["matched"] == ["text"]
    image = client.get(f"/api/images/{hit.id}").get_json()
    assert image["text"].splitlines()[0] == "INVOICE 2023"
    assert [line["text"] for line in image["text_lines"]] == image["text"].splitlines()
    assert all(0 <= v <= 1 for line in image["text_lines"] for v in line["box"])


def test_a_word_split_by_a_space_too_many_is_still_found_inside(library, tmp_path):
    root = tmp_path / "p"
    root.mkdir()
    Image.new("RGB", (64, 48), (90, 120, 30)).save(root / "a.png")
    sync(library, [str(root)], progress=False)
    image_id = 1
    assert library.catalog.image(image_id).path.endswith("a.png")
    line = ocr.TextLine("lomone dissu loben", (0.1, 0.1, 0.9, 0.2), 0.9)
    library.catalog.texts.record([(image_id, [line])])
    for typed in ("dissulo", "dissu", "lomone"):
        assert first_hit(library, typed).id == image_id, typed
    assert first_hit(library, "nedis") is not None  # across a space read: held without too
    assert first_hit(library, "lobenx") is None


def test_off_by_default_and_on_is_remembered(library, tmp_path):
    root = tmp_path / "p"
    root.mkdir()
    words_picture(["GARDEN"]).save(root / "a.png")
    assert sync(library, [str(root)], progress=False).text_read == 0
    assert first_hit(library, "garden") is None
    library.set_reads_text(True)
    assert sync(library, [], progress=False).text_read == 1  # catalogued images too
    assert first_hit(library, "garden") is not None
    library.set_reads_text(False)
    words_picture(["BAKERY"]).save(root / "b.png")
    assert sync(library, [], progress=False).text_read == 0


def test_without_the_extra_ocr_is_a_one_line_error(library, tmp_path, monkeypatch):
    monkeypatch.setattr(ocr, "available", lambda: False)
    with pytest.raises(ConfigError, match=r"pip install 'imgsearch\[ocr\]'"):
        library.set_reads_text(True)
    assert library.reads_text() is False  # nothing was recorded


def test_index_ocr_on_the_command_line_is_remembered(tmp_path):
    home, root = tmp_path / "home", tmp_path / "p"
    root.mkdir()
    words_picture(["GARDEN"]).save(root / "a.png")
    first = json.loads(run("index", "--ocr", *TINY, "--json", root, home=home).stdout)
    assert first["text_read"] == 1
    words_picture(["BAKERY"]).save(root / "b.png")
    again = json.loads(run("index", "--json", home=home).stdout)
    assert again["text_read"] == 1
    found = json.loads(run("search", "bakery", "--mode", "text", "--json", home=home).stdout)
    assert [r["path"].rsplit("/", 1)[1] for r in found["results"]] == ["b.png"]


def test_a_reader_failure_on_one_picture_does_not_stop_the_run(library, tmp_path, monkeypatch):
    root = tmp_path / "p"
    root.mkdir()
    words_picture(["GARDEN"]).save(root / "a.png")
    words_picture(["BAKERY"]).save(root / "b.png")
    read = ocr.TextReader.read

    def flaky(self, image):
        if image.size == (640, 480) and flaky.calls == 0:
            flaky.calls += 1
            raise RuntimeError("onnxruntime: bad input")
        return read(self, image)

    flaky.calls = 0
    monkeypatch.setattr(ocr.TextReader, "read", flaky)
    library.set_reads_text(True)
    report = sync(library, [str(root)], progress=False)
    assert report.text_read == 2 and flaky.calls == 1
    found = [first_hit(library, w) for w in ("garden", "bakery")]
    assert sum(h is not None for h in found) == 1  # the other picture was read


def test_the_presence_pass_looks_closer_only_where_it_saw_a_line_it_could_not_read():
    reader = ocr.TextReader()
    looked: list[int] = []
    answers: list = []

    def glance(pixels):
        looked.append(max(pixels.size))
        return answers.pop(0), None

    reader.presence = ocr.Engines(lambda: glance)
    photo = Image.new("RGB", (4000, 3000))
    box = [[0, 0], [90, 0], [90, 12], [0, 12]]  # a thin line: small text, maybe
    blob = [[0, 0], [90, 0], [90, 60], [0, 60]]  # as thick as no small text is
    glance_side, closer = ocr.GLANCE_SIDE, ocr.PRESENCE_SIDE
    assert glance_side < closer
    cases = (
        ([None], False, [glance_side]),  # nothing that looks like text: done
        ([[(box, "EXIT 24", 0.9)]], True, [glance_side]),  # read at a glance
        ([[(box, "E~", 0.2)], [(box, "EXIT 24", 0.8)]], True, [glance_side, closer]),
        ([[(box, "E~", 0.2)], [(box, "~", 0.3)]], False, [glance_side, closer]),
        ([[(box, "E~", 0.2)], None], False, [glance_side, closer]),
        # A blob's edge read as a number: too few letters to count, too thick to be
        # small text worth a closer look.
        ([[(blob, "9.0", 0.91)]], False, [glance_side]),
        (
            [[(blob, "~", 0.2), (box, "9.0", 0.91)], [(box, "9.05 EUR", 0.9)]],
            True,
            [glance_side, closer],
        ),
    )
    for given, expected, sides in cases:
        looked.clear()
        answers[:] = given
        assert reader.has_text(photo) is expected
        assert looked == sides and not answers


def test_the_embedding_decode_tells_photos_without_text(tmp_path):
    """The glance on the pixels decoded for a 224 px model: a 12 MP photo decodes at
    500 × 375, as large as a glance looks."""
    from indexer.sync.pipeline import WorkItem, make_decoder
    from indexer.sync.textread import textless_check

    ramp = np.linspace(60, 200, 4000)[None, :, None].repeat(3000, axis=0).repeat(3, axis=2)
    Image.fromarray(ramp.astype(np.uint8)).save(tmp_path / "sky.jpg", quality=90)
    words_picture(["HARBOUR 1907"], px=60, size=(1000, 750)).save(tmp_path / "sign.jpg")
    Image.new("RGB", (300, 200), (90, 120, 60)).save(tmp_path / "small.png")
    decode = make_decoder(
        lambda image: np.zeros(1),
        max_megapixels=100,
        min_side=224,
        textless=textless_check(ocr.TextReader()),
    )
    found = {}
    for name in ("sky.jpg", "sign.jpg", "small.png"):
        path = tmp_path / name
        found[name] = decode(WorkItem(str(tmp_path), str(path), *_size_time(path))).textless
    # The small one is decoded too small for a glance: the reading pass looks at it.
    assert found == {"sky.jpg": True, "sign.jpg": False, "small.png": False}
    # Pixels catalogued already keep their text: no glance for a photo embedded for
    # another model, nor for a file whose metadata alone changed.
    path = tmp_path / "sky.jpg"
    again = WorkItem(str(tmp_path), str(path), *_size_time(path), kind="reembed", image_id=1)
    assert decode(again).textless is False
    digest = decode(WorkItem(str(tmp_path), str(path), *_size_time(path))).pixel_hash
    retagged = WorkItem(str(tmp_path), str(path), *_size_time(path), "changed", 1, digest)
    decoded = decode(retagged)
    assert decoded.same_pixels and decoded.textless is False


def _size_time(path):
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def test_photos_seen_without_text_are_not_decoded_again(library, tmp_path, monkeypatch):
    """A photo the embedding's decode found without text is recorded as read, with no
    text, and the reading pass leaves it alone; one decoded too small for a glance is
    decoded again and looked at."""
    from indexer.sync import textread

    # The tiny model's decode is 100 × 75 for a 12 MP photo: let that count as glanceable.
    monkeypatch.setattr(textread, "SHARED_GLANCE_SIDE", 90)
    root = tmp_path / "photos"
    root.mkdir()
    ramp = np.linspace(60, 200, 4000)[None, :, None].repeat(3000, axis=0).repeat(3, axis=2)
    Image.fromarray(ramp.astype(np.uint8)).save(root / "sky.jpg", quality=90)
    Image.new("RGB", (80, 60), (90, 120, 60)).save(root / "small.png")
    decoded: list[str] = []
    real = textread.load_image

    def load_image(path, **kwargs):
        decoded.append(path.rsplit("/", 1)[1])
        return real(path, **kwargs)

    monkeypatch.setattr(textread, "load_image", load_image)
    library.set_reads_text(True)
    assert sync(library, [str(root)], progress=False).text_read == 2
    assert "sky.jpg" not in decoded and "small.png" in decoded
    ids = list(library.catalog.images(range(1, 3)))
    assert [library.catalog.texts.lines(i) for i in ids] == [[], []]
    assert sync(library, [], progress=False).text_read == 0
