"""The UI in a real browser: Debian's headless Chromium driven by Playwright against the
real server (waitress) on an indexed sample folder. Screenshots go to test-output/browser/
at the repository root (git-ignored).

Chromium must be installed (.ci/run installs it): a missing browser fails this test, it is
never skipped.
"""

from __future__ import annotations

import base64
import json
import shutil
import time
from pathlib import Path

import pytest
from imagetree import make_jpeg, make_png
from mediafiles import make_avif, make_dng, make_heic
from PIL import Image
from playwright.sync_api import Page, sync_playwright
from savedmodel import train_saved_model
from test_webui_live import fetch, running
from tinylib import tiny_settings
from videofiles import make_video, scene_picture

from indexer.sync.run import sync
from search.library import Library
from webui import create_app

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-output" / "browser"
XSS_NAME = '"><img src=x onerror=alert(1)>.jpg'
ALL_THUMBS_LOADED = """() => {
    const imgs = [...document.querySelectorAll('img.thumb')];
    return imgs.length > 0 && imgs.every((i) => i.complete && i.naturalWidth > 0);
}"""
CURVES_LOADED = """() => {
    const img = document.querySelector('.curves img');
    return img !== null && img.complete && img.naturalWidth > 0;
}"""
# Every text the Models page's job panel shows, across the reload at the job's end.
RECORD_JOB_PANEL = """
document.addEventListener("DOMContentLoaded", () => {
    const text = document.getElementById("job-text");
    if (!text) return;
    const seen = JSON.parse(sessionStorage.getItem("jobPanelTexts") || "[]");
    const record = () => {
        seen.push(text.textContent);
        sessionStorage.setItem("jobPanelTexts", JSON.stringify(seen));
        window.jobPanelTexts = seen;
    };
    record();
    new MutationObserver(record).observe(text, {childList: true, characterData: true,
                                                subtree: true});
});
"""


@pytest.fixture
def sample(tmp_path):
    root = tmp_path / "photos"
    for i in range(14):
        make_jpeg(root / ("2019" if i < 7 else "2021") / f"photo_{i:02d}.jpg", i, size=(400, 300))
    exif = Image.Exif()
    exif[0x0112] = 6  # shown portrait
    make_jpeg(root / "rotated.jpg", 40, size=(400, 300), exif=exif)
    make_png(root / "drawing.png", 41, size=(300, 300))
    make_jpeg(root / XSS_NAME, 42, size=(400, 300))
    settings = tiny_settings(tmp_path / "home", workers=1)
    with Library(settings) as lib:
        sync(lib, [str(root)], progress=False)
        yield lib, root


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def card_ids(page: Page) -> list[int]:
    hrefs = page.locator("a.card").evaluate_all("(links) => links.map((a) => a.pathname)")
    return [int(h.rsplit("/", 1)[1]) for h in hrefs]


def test_search_open_similar_upload_and_caption_in_chromium(sample):
    lib, root = sample
    total = lib.catalog.image_count()
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    SCREENSHOTS.mkdir(parents=True)
    problems: list[str] = []
    requested: list[str] = []
    failed: list[str] = []

    with running(create_app(library=lib)) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
        page.on("request", lambda r: requested.append(r.url))
        page.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)

        # Type a query; it lands in the URL; thumbnails load.
        page.goto(base + "/")
        page.locator("#q").fill("a red square")
        page.keyboard.press("Enter")
        page.wait_for_url("**/?q=a+red+square")
        page.wait_for_function(ALL_THUMBS_LOADED)
        assert page.locator("img.thumb").count() == total  # fewer than a page
        names = page.locator("a.card .name").all_inner_texts()
        assert XSS_NAME in names  # shown as text, and no alert dialog fired
        shot(page, "1-results")

        # Keyboard: "/" jumps back to the search box from anywhere on the page.
        page.locator("a.card").first.focus()
        page.keyboard.press("/")
        assert page.evaluate("document.activeElement.id") == "q"

        # Open a result: the larger view, its path and the caption form.
        first_id = card_ids(page)[0]
        page.locator("a.card").first.click()
        page.wait_for_url(f"**/images/{first_id}")
        assert page.locator("dd.path").inner_text() == lib.catalog.image(first_id).path
        page.wait_for_function("() => document.querySelector('img.full').naturalWidth > 0")
        shot(page, "2-detail")

        # Add a caption: it is stored in the catalog and shown.
        page.locator("#caption").fill("a test caption typed in the browser")
        page.get_by_role("button", name="Add caption").click()
        page.wait_for_url(f"**/images/{first_id}#captions")
        assert page.locator("ul.captions li").all_inner_texts() == [
            "a test caption typed in the browser"
        ]
        assert [c.text for c in lib.catalog.captions(first_id)] == [
            "a test caption typed in the browser"
        ]
        shot(page, "3-caption")

        # Find similar: a bookmarkable search that leaves the image itself out.
        page.locator("#find-similar").click()
        page.wait_for_url(f"**/?like={first_id}")
        page.wait_for_function(ALL_THUMBS_LOADED)
        similar = card_ids(page)
        assert len(similar) == total - 1 and first_id not in similar
        shot(page, "4-similar")

        # Search by example with the file picker: the picked image comes back first.
        example = root / "2021" / "photo_09.jpg"
        example_id = next(
            i for i, m in lib.catalog.images(similar + [first_id]).items() if m.path == str(example)
        )
        page.goto(base + "/")
        with page.expect_navigation():
            page.locator("#image").set_input_files(str(example))
        page.wait_for_function(ALL_THUMBS_LOADED)
        assert page.locator("img.query-preview").evaluate("(i) => i.naturalWidth") > 0
        assert card_ids(page)[0] == example_id
        shot(page, "5-upload-picker")

        # ... and by dropping a file on the page.
        dropped = root / "drawing.png"
        page.goto(base + "/")
        with page.expect_navigation():
            page.evaluate(
                """({data, name}) => {
                    const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
                    const files = new DataTransfer();
                    files.items.add(new File([bytes], name, {type: "image/png"}));
                    document.getElementById("dropzone").dispatchEvent(
                        new DragEvent("drop", {dataTransfer: files, bubbles: true,
                                               cancelable: true}));
                }""",
                {"data": base64.b64encode(dropped.read_bytes()).decode(), "name": dropped.name},
            )
        page.wait_for_function(ALL_THUMBS_LOADED)
        top = lib.catalog.image(card_ids(page)[0])
        assert top.path == str(dropped)
        shot(page, "6-upload-drop")

        # Infinite scroll: the server renders four, the rest arrive as the pager nears view.
        response = page.goto(base + "/?q=sky&k=4")
        assert response.text().count('class="card"') == 4
        page.locator("#pager").scroll_into_view_if_needed()
        page.wait_for_function(f"() => document.querySelectorAll('a.card').length === {total}")
        page.wait_for_function(ALL_THUMBS_LOADED)
        assert len(set(card_ids(page))) == total
        page.locator("#pager").scroll_into_view_if_needed()
        shot(page, "7-infinite-scroll")

        # Why each hit matched, on the server's cards and on those infinite scroll adds.
        response = page.goto(base + "/?q=2019&k=2&mode=text&relevant=1")
        assert response.text().count("<mark>2019</mark>") == 2
        assert "7 relevant" in page.locator(".summary").inner_text()
        page.locator("#pager").scroll_into_view_if_needed()
        page.wait_for_function("() => document.querySelectorAll('a.card').length === 7")
        assert page.locator(".why mark").all_inner_texts() == ["2019"] * 7
        assert page.locator(".why").first.inner_text() == "folder: /2019/"
        shot(page, "7b-why-matched")

        # Teaching a tag from the grid: every card, also those infinite scroll adds, gets
        # "is / is not" buttons posting for its own image; a mark comes back to the grid.
        page.goto(base + "/?q=sky&k=4&teach=blicket")
        page.locator("#pager").scroll_into_view_if_needed()
        page.wait_for_function(f"() => document.querySelectorAll('a.card').length === {total}")
        actions = page.eval_on_selector_all(
            "form.teach", "forms => forms.map((f) => new URL(f.action).pathname)"
        )
        assert actions == [f"/images/{i}/tags" for i in card_ids(page)]
        marked_id = card_ids(page)[-1]
        page.locator("form.teach").last.locator("button[value=yes]").click()
        page.wait_for_url("**/?q=sky&k=4&teach=blicket")
        assert "blicket" in page.locator(".tag-facets").inner_text().split()
        assert lib.catalog.image_tags([marked_id], lib.serving_model)[marked_id] == ["blicket"]
        shot(page, "7c-teach-from-the-grid")

        page.goto(base + "/status")
        assert str(root) in page.locator("main").inner_text()
        shot(page, "8-status")
        browser.close()

    assert failed == []
    assert problems == []  # no CSP violation, script error or alert()
    assert requested and all(url.startswith((base, "data:")) for url in requested)


def test_models_page_switches_the_model_while_search_keeps_answering(sample, tmp_path):
    """Curves shown; "Make active" starts a background re-index whose progress the page
    shows; searches answer throughout, with the old model until the new index is complete."""
    lib, _root = sample
    train_saved_model(lib.settings.home, "second", tmp_path / "pairs")
    old = lib.serving_model
    total = lib.catalog.image_count()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    shown: list[str] = []  # what the job panel said, as the page updated it
    answers: list[tuple[int, str | None]] = []

    with running(create_app(library=lib)) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.add_init_script(RECORD_JOB_PANEL)

        page.goto(base + "/models")
        card = page.locator("li.model", has=page.get_by_role("heading", name="second"))
        card.locator(".curves img").scroll_into_view_if_needed()
        page.wait_for_function(CURVES_LOADED)
        assert card.locator(".badge").count() == 0
        shot(page, "9-models")

        card.get_by_role("button", name="Make active").click()
        page.wait_for_url("**/models#job")
        assert page.locator("#job").is_visible() and page.locator("#job-bar").is_visible()
        page.wait_for_function(
            "() => document.getElementById('job-text').textContent.startsWith('Step 2 of 2')"
        )
        shot(page, "10-models-switching")
        job = {"state": "running"}
        deadline = time.monotonic() + 180
        while job["state"] == "running":
            status, body = fetch(f"{base}/api/search?q=a+red+square&k=5")
            answers.append((status, json.loads(body).get("model_id")))
            job = json.loads(fetch(f"{base}/api/jobs/current")[1])
            assert time.monotonic() < deadline, job
        assert job["state"] == "done", job
        new = job["result"]["model_id"]
        # The page reloads once the job ends: the new model is the serving one.
        page.wait_for_selector(f'li.model.is-serving[data-model-id="{new}"] .badge.serving')
        assert page.locator("li.model.is-serving h2").inner_text() == "second"
        assert "Done: second is active and serving" in page.locator("#job-text").inner_text()
        shown += page.evaluate("window.jobPanelTexts || []")
        shot(page, "11-models-switched")
        # A library this small embeds in a fraction of a second, between two of the page's
        # polls; how the panel words the counts of a run in progress, from this job's own:
        counting = page.evaluate("(job) => jobText(job)", {**job, "state": "running"})
        assert counting.startswith(f"Step 2 of 2: re-indexing — indexing {total} / {total} img")
        browser.close()

    assert problems == []
    assert all(status == 200 for status, _ in answers), answers
    models = [m for _, m in answers]
    switch = models.index(new) if new in models else len(models)
    assert models[0] == old and set(models[:switch]) == {old} and set(models[switch:]) <= {new}
    assert any(t.startswith("Step 2 of 2: re-indexing") for t in shown), shown


# Top and bottom quarter means of an <img>, read back through a canvas (same origin).
IMAGE_BANDS = """(img) => {
    const c = document.createElement('canvas');
    c.width = img.naturalWidth; c.height = img.naturalHeight;
    const g = c.getContext('2d');
    g.drawImage(img, 0, 0);
    const band = (y0, y1) => {
        const d = g.getImageData(0, y0, c.width, y1 - y0).data;
        const sum = [0, 0, 0];
        for (let i = 0; i < d.length; i += 4) {
            for (let k = 0; k < 3; k++) sum[k] += d[i + k];
        }
        return sum.map((s) => s / (d.length / 4));
    };
    const h = c.height;
    return {w: c.width, h: h, top: band(0, h >> 2), bottom: band(h - (h >> 2), h)};
}"""


def test_phone_and_camera_formats_show_upright_in_chromium(tmp_path):
    """HEIC, AVIF and DNG stored sideways (EXIF orientation 6): the grid's thumbnails and
    the detail page's picture are upright in the browser; the original downloads as is."""
    root = tmp_path / "phone"
    files = {
        "iphone.heic": make_heic(root / "iphone.heic", "2018:07:06 05:04:03"),
        "android.avif": make_avif(root / "android.avif", "2021:03:02 10:00:00"),
        "camera.dng": make_dng(root / "camera.dng", "2022:01:02 03:04:05", preview=True),
    }
    problems: list[str] = []
    with Library(tiny_settings(tmp_path / "home", workers=1)) as lib:
        sync(lib, [str(root)], progress=False)
        assert lib.catalog.image_count() == 3 and lib.catalog.failures() == []
        with running(create_app(library=lib)) as base, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1000, "height": 700})
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.goto(base + "/?q=photo")
            page.wait_for_function(ALL_THUMBS_LOADED)
            names = page.locator("a.card .name").all_inner_texts()
            assert sorted(names) == sorted(files)
            for thumb in page.locator("img.thumb").all():
                assert _upright(thumb.evaluate(IMAGE_BANDS))
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shot(page, "12-phone-formats")
            for image_id in card_ids(page):
                page.goto(f"{base}/images/{image_id}")
                page.wait_for_function("() => document.querySelector('img.full').naturalWidth > 0")
                assert _upright(page.locator("img.full").evaluate(IMAGE_BANDS))
                name = page.locator("h1.name").inner_text()
                status, body = fetch(f"{base}/files/{image_id}")
                assert status == 200 and body == files[name].read_bytes()
            browser.close()
    assert problems == []


def _upright(bands: dict) -> bool:
    """Portrait, blue on top, red below (see tests/mediafiles.py)."""
    top, bottom = bands["top"], bands["bottom"]
    return bands["h"] > bands["w"] and top[2] > 150 > top[0] and bottom[0] > 150 > bottom[2]


PLAYER_READY = """() => {
    const v = document.querySelector('video#player');
    return v !== null && v.readyState >= 1;
}"""


def test_a_video_found_by_its_second_scene_plays_from_there_in_chromium(tmp_path):
    """The grid shows the video once, at its best frame's time; its page plays it from
    that second (a WebM that Debian's Chromium decodes)."""
    root = tmp_path / "clips"
    make_video(root / "holiday.webm", [(1, 4.0), (2, 4.0), (3, 4.0)])
    make_jpeg(root / "photo.jpg", 5, size=(400, 300))
    query = tmp_path / "query.png"
    scene_picture(2, step=3).save(query)
    problems: list[str] = []
    with Library(tiny_settings(tmp_path / "home", workers=1)) as lib:
        sync(lib, [str(root)], progress=False)
        assert lib.catalog.failures() == []
        with running(create_app(library=lib)) as base, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1000, "height": 700})
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.goto(base + "/")
            with page.expect_navigation():
                page.locator("#image").set_input_files(str(query))
            page.wait_for_function(ALL_THUMBS_LOADED)
            names = page.locator("a.card .name").all_inner_texts()
            assert names.count("holiday.webm") == 1 and names[0] == "holiday.webm"
            badge = page.locator("a.card .video").first.inner_text()
            minutes, seconds = badge.lstrip("▶ ").split(":")
            assert 3 <= int(minutes) * 60 + int(seconds) <= 9
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shot(page, "13-video-result")
            page.locator("a.card").first.click()
            page.wait_for_url("**/images/*")
            page.wait_for_function(PLAYER_READY)
            t = float(page.locator("video#player").get_attribute("data-t"))
            assert 3.0 <= t <= 9.0
            now = page.evaluate("document.querySelector('video#player').currentTime")
            assert abs(now - t) < 0.5
            shot(page, "14-video-page")
            browser.close()
    assert problems == []
