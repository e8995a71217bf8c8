"""The web UI and JSON API through Flask's test client: every route, every error, and the
security promises (DESIGN.md promise 6): files by id only, inside the roots, trusted Host
names, CSRF on every POST, size-limited uploads, autoescaped names, strict headers."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
from html.parser import HTMLParser

import pytest
from flask.testing import FlaskClient
from imagetree import huge_png_bytes, make_jpeg, make_png
from PIL import Image
from tinylib import tiny_settings

from indexer.sync.run import sync
from search.library import Library
from search.query.searcher import SearchRequest
from webui import MAX_UPLOAD_BYTES, create_app
from webui.files import THUMB_SIDE
from webui.security import CONTENT_SECURITY_POLICY

XSS_NAME = '"><img src=x onerror=alert(1)>.jpg'
ORIENTATION = 0x0112


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """An indexed sample folder (one library for the whole module: indexing loads a model)."""
    base = tmp_path_factory.mktemp("webui")
    root = base / "photos"
    for i in range(10):
        make_jpeg(root / ("a" if i < 5 else "b") / f"p{i}.jpg", i)
    make_jpeg(root / "big.jpg", 20, size=(1200, 800))
    exif = Image.Exif()
    exif[ORIENTATION] = 6  # stored landscape, shown portrait
    make_jpeg(root / "rotated.jpg", 21, size=(480, 320), exif=exif)
    make_jpeg(root / XSS_NAME, 22)
    make_jpeg(root / "victim.jpg", 23)
    make_jpeg(root / "changing.jpg", 24)
    make_jpeg(root / "vanishing.jpg", 25)
    make_png(root / "swapped_dir" / "inner.png", 26)
    (root / "broken.jpg").write_text("not a picture", encoding="utf-8")
    outside = base / "outside"
    make_jpeg(outside / "secret.jpg", 99)
    (outside / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n", encoding="utf-8")
    lib = Library(tiny_settings(base / "home"))
    sync(lib, [str(root)], progress=False)
    ids = {os.path.relpath(m.path, root): i for i, m in lib.catalog.images(_all(lib)).items()}
    yield {"lib": lib, "root": root, "outside": outside, "ids": ids}
    lib.close()


def _all(lib):
    return lib.catalog.filter_ids().tolist()


@pytest.fixture(scope="module")
def app(photos):
    return create_app(library=photos["lib"])


class BufferedClient(FlaskClient):
    """Reads and closes each response, as a browser would (files are streamed)."""

    def open(self, *args, **kwargs):
        kwargs.setdefault("buffered", True)
        return super().open(*args, **kwargs)


@pytest.fixture
def client(app):
    app.test_client_class = BufferedClient
    return app.test_client()


@pytest.fixture
def token(app):
    return app.config["CSRF_TOKEN"]


@pytest.fixture
def ids(photos):
    return photos["ids"]


def upload(data: bytes, name="query.jpg") -> dict:
    return {"image": (io.BytesIO(data), name)}


def post_headers(token, origin="http://localhost") -> dict:
    return {"X-CSRF-Token": token, "Origin": origin}


ROUTES = {
    ("/duplicates", "GET"),  # these two: tests/test_duplicates.py
    ("/api/duplicates", "GET"),
    ("/", "GET"),
    ("/", "POST"),
    ("/images/<int:image_id>", "GET"),
    ("/images/<int:image_id>/captions", "POST"),
    ("/status", "GET"),
    ("/failures", "GET"),
    ("/api/search", "GET"),
    ("/api/search", "POST"),
    ("/api/images/<int:image_id>", "GET"),
    ("/api/images/<int:image_id>/similar", "GET"),
    ("/api/images/<int:image_id>/captions", "POST"),
    ("/api/status", "GET"),
    ("/api/failures", "GET"),
    ("/api/csrf-token", "GET"),
    ("/files/<int:image_id>", "GET"),
    ("/thumbs/<int:image_id>", "GET"),
    ("/static/<path:filename>", "GET"),
    # The Models page, its API and the background jobs: tests/test_models_page.py.
    ("/models", "GET"),
    ("/models/<path:name>/use", "POST"),
    ("/models/train", "POST"),
    ("/models/<name>/curves.png", "GET"),
    ("/api/models", "GET"),
    ("/api/models/<path:name>/use", "POST"),
    ("/api/train", "POST"),
    ("/api/jobs/current", "GET"),
    # Tags: tests/test_tags_web.py.
    ("/api/tags", "GET"),
    ("/api/tags", "POST"),
    ("/api/tags/<name>/examples", "POST"),
    ("/api/tags/<name>", "DELETE"),
    ("/api/images/<int:image_id>/describe", "GET"),
    ("/images/<int:image_id>/tags", "POST"),
}


def test_the_routes_are_the_ones_tested_here(app):
    """A new route must be added here, and so get tests of its own."""
    found = {
        (rule.rule, method)
        for rule in app.url_map.iter_rules()
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert found == ROUTES


# -- pages --------------------------------------------------------------------------------
def test_search_page_without_query_invites_a_search(client, photos):
    r = client.get("/")
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert 'name="q"' in html and "autofocus" in html
    assert f"{len(photos['ids'])} images indexed" in html
    assert 'type="file"' in html and 'name="csrf_token"' in html


def test_search_page_shows_results_with_thumbnails_scores_and_bookmarkable_pages(client):
    r = client.get("/?q=a+red+square&k=4")
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert html.count('class="thumb"') == 4
    assert re.search(r'class="score">-?\d\.\d{3}<', html)
    assert 'href="/?q=a+red+square&amp;k=4&amp;offset=4"' in html  # next page
    # Scrolling for more asks the API to fold copies, as the page does by default.
    assert 'data-more="/api/search?q=a+red+square&amp;k=4&amp;offset=4&amp;collapse=1"' in html
    second = client.get("/?q=a+red+square&k=4&offset=4").get_data(as_text=True)
    assert "Results 5–8" in second and 'rel="prev"' in second


def test_search_page_pages_follow_the_ranking(client, photos):
    lib = photos["lib"]
    expected = [h.id for h in lib.searcher.search(SearchRequest(text="sky", k=8)).hits]
    shown = []
    for offset in (0, 4):
        html = client.get(f"/?q=sky&k=4&offset={offset}").get_data(as_text=True)
        shown += [int(i) for i in re.findall(r'href="/images/(\d+)"', html)]
    assert shown == expected


def test_search_page_filters_by_folder_date_and_sorts(client, photos):
    folder = str(photos["root"] / "a")
    html = client.get("/", query_string={"q": "x", "path_prefix": folder}).get_data(as_text=True)
    names = re.findall(r'class="name">([^<]+)<', html)
    assert sorted(names) == [f"p{i}.jpg" for i in range(5)]
    assert '<details class="filters" open>' in html
    empty = client.get("/?q=x&before=1990").get_data(as_text=True)
    assert "Nothing matched" in empty
    assert client.get("/?q=x&sort=date&after=2000-01").status_code == 200


def test_find_similar_link_searches_like_an_image(client, ids):
    image_id = ids["a/p0.jpg"]
    html = client.get(f"/images/{image_id}").get_data(as_text=True)
    assert f'href="/?like={image_id}"' in html
    results = client.get(f"/?like={image_id}").get_data(as_text=True)
    assert f'images like <a href="/images/{image_id}">image {image_id}</a>' in results
    assert results.count(f'href="/images/{image_id}"') == 1  # itself is not a result
    assert 'class="thumb"' in results


@pytest.mark.parametrize(
    "query, message",
    [
        ("q=x&k=0", "k must be between 1 and 200"),
        ("q=x&k=abc", "k must be a whole number"),
        ("q=x&offset=-1", "offset must be a whole number"),
        ("q=x&after=last+week", "is not a date"),
        ("q=x&sort=random", "sort must be"),
        ("like=99999999999999999999", "like must be between"),
    ],
)
def test_search_page_bad_parameters_are_400_with_the_reason(client, query, message):
    r = client.get(f"/?{query}")
    assert r.status_code == 400
    assert message in r.get_data(as_text=True)


def test_search_by_uploaded_image_on_the_page(client, token, photos, ids):
    data = (photos["root"] / "a" / "p1.jpg").read_bytes()
    r = client.post(
        "/", data={"csrf_token": token, **upload(data)}, headers={"Origin": "http://localhost"}
    )
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert 'src="data:image/jpeg;base64,' in html  # the query image, shown back
    first = int(re.search(r'href="/images/(\d+)"', html).group(1))
    assert first == ids["a/p1.jpg"]


def test_image_page_shows_facts_similar_link_and_caption_form(client, ids):
    image_id = ids["rotated.jpg"]
    r = client.get(f"/images/{image_id}")
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert "rotated.jpg" in html and "320 × 480 px" in html
    assert f'src="/files/{image_id}"' in html
    assert "Find similar" in html and 'name="text"' in html and "No captions yet" in html


def test_caption_form_stores_a_training_pair_and_redirects(client, token, photos, ids):
    image_id = ids["b/p5.jpg"]
    r = client.post(
        f"/images/{image_id}/captions",
        data={"csrf_token": token, "text": "  two   boats\nat dawn "},
        headers={"Origin": "http://localhost"},
    )
    assert r.status_code == 303 and r.headers["Location"] == f"/images/{image_id}#captions"
    assert [c.text for c in photos["lib"].catalog.captions(image_id)] == ["two boats at dawn"]
    assert "<li>two boats at dawn</li>" in client.get(f"/images/{image_id}").get_data(as_text=True)
    empty = client.post(
        f"/images/{image_id}/captions",
        data={"csrf_token": token, "text": "   "},
        headers={"Origin": "http://localhost"},
    )
    assert empty.status_code == 400 and "needs some text" in empty.get_data(as_text=True)


def test_pages_say_when_an_index_run_is_in_progress(client, photos):
    with Library(photos["lib"].settings) as indexer, indexer.lock:
        assert "An index run is in progress" in client.get("/").get_data(as_text=True)
        assert "An index run is in progress" in client.get("/status").get_data(as_text=True)
        assert client.get("/api/status").get_json()["indexing"] is True
        assert client.get("/?q=x").status_code == 200  # searching goes on meanwhile
    assert "An index run is in progress" not in client.get("/").get_data(as_text=True)


def test_status_and_failures_pages(client, photos):
    status = client.get("/status").get_data(as_text=True)
    assert str(photos["root"]) in status and "imgsearch-tiny" in status
    assert "generation" in status
    failures = client.get("/failures").get_data(as_text=True)
    assert "broken.jpg" in failures and "not an image" in failures


def test_file_names_are_rendered_as_text(client, photos, ids):
    """A file named like markup is escaped everywhere it appears."""
    image_id = ids[XSS_NAME]
    escaped = "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;.jpg"
    pages = [
        client.get(f"/images/{image_id}").get_data(as_text=True),
        client.get("/", query_string={"q": "x", "k": 50}).get_data(as_text=True),
    ]
    for html in pages:
        assert "<img src=x onerror" not in html
        assert escaped in html
    api = client.get(f"/api/images/{image_id}").get_json()
    assert api["path"].endswith(XSS_NAME)  # JSON carries the real name, as data


class _Markup(HTMLParser):
    """The elements a browser would build from a page: what is markup, not text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []

    def handle_starttag(self, tag, attrs):
        names = {name for name, _ in attrs}
        if tag == "script" and "src" not in names:
            self.found.append("inline <script>")
        if tag == "style":
            self.found.append("<style> element")
        self.found += [f"<{tag} {name}=...>" for name in names if name.startswith("on")]
        if "style" in names:
            self.found.append(f"<{tag} style=...>")


def test_pages_have_no_inline_script_or_style(client, ids):
    """The CSP forbids inline code; a page that relied on it would silently break, and an
    event handler or script that reached the markup (a file name not escaped) would be
    injected code. The pages are parsed as a browser would, so text that only looks like
    markup (the escaped file name) is not mistaken for it, and nothing is cut out first."""
    xss = ids[XSS_NAME]
    pages = (
        "/",
        "/?q=x&k=50",  # the results include the file named like markup
        f"/images/{ids['a/p0.jpg']}",
        f"/images/{xss}",
        "/status",
        "/failures",
        "/models",
    )
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        markup = _Markup()
        markup.feed(response.get_data(as_text=True))
        assert markup.found == [], url


def test_static_files(client):
    js = client.get("/static/app.js")
    assert js.status_code == 200 and "javascript" in js.content_type
    assert "innerHTML" not in js.get_data(as_text=True)
    css = client.get("/static/style.css")
    assert css.status_code == 200 and css.content_type.startswith("text/css")
    assert "http" not in css.get_data(as_text=True)  # nothing loaded from elsewhere


# -- JSON API ---------------------------------------------------------------------------
def test_api_search_returns_the_documented_shape(client, photos):
    r = client.get("/api/search?q=a+red+square&k=5")
    assert r.status_code == 200 and r.content_type == "application/json"
    body = r.get_json()
    assert list(body)[:3] == ["model_id", "query", "results"]
    assert body["model_id"].startswith("imgsearch-tiny/") and body["query"] == "a red square"
    assert len(body["results"]) == 5
    lib = photos["lib"]
    expected = lib.searcher.search(SearchRequest(text="a red square", k=5)).hits
    assert [h["id"] for h in body["results"]] == [h.id for h in expected]
    for hit in body["results"]:
        assert {"id", "path", "score", "thumb_url", "file_url"} <= set(hit)
        assert hit["path"] == lib.catalog.image(hit["id"]).path
        assert hit["thumb_url"] == f"/thumbs/{hit['id']}"
        assert hit["file_url"] == f"/files/{hit['id']}"
    offset = client.get("/api/search?q=a+red+square&k=2&offset=3").get_json()["results"]
    assert [h["id"] for h in offset] == [h.id for h in expected[3:5]]


def test_api_search_filters(client, photos, monkeypatch):
    prefix = str(photos["root"] / "b") + "/"
    body = client.get("/api/search", query_string={"q": "x", "k": 50, "path_prefix": prefix})
    assert {h["path"] for h in body.get_json()["results"]} == {
        str(photos["root"] / "b" / f"p{i}.jpg") for i in range(5, 10)
    }
    monkeypatch.chdir(photos["root"])  # a folder relative to the working directory, as on the CLI
    relative = client.get("/api/search", query_string={"q": "x", "k": 50, "path_prefix": "b"})
    assert relative.get_json()["results"] == body.get_json()["results"]
    none = client.get("/api/search?q=x&after=2100").get_json()
    assert none["results"] == []
    dated = client.get("/api/search?q=x&k=50&sort=date").get_json()["results"]
    dates = [h["date"] for h in dated]
    assert dates == sorted(dates, reverse=True)


@pytest.mark.parametrize(
    "query",
    [
        "",
        "q=",
        "q=%20%20",
        "q=x&k=0",
        "q=x&k=201",
        "q=x&offset=10001",
        "q=x&before=soon",
        "q=x&sort=name",
        "like=abc",
        "q=" + "x" * 1001,
    ],
)
def test_api_search_bad_requests_are_400_json(client, query):
    r = client.get(f"/api/search?{query}")
    assert r.status_code == 400
    assert r.get_json()["error"]


def test_api_search_by_image(client, token, photos, ids):
    data = (photos["root"] / "b" / "p7.jpg").read_bytes()
    r = client.post("/api/search?k=3", data=upload(data, "p7.jpg"), headers=post_headers(token))
    assert r.status_code == 200
    body = r.get_json()
    assert body["query"] == "image:p7.jpg"
    assert len(body["results"]) == 3
    assert body["results"][0]["id"] == ids["b/p7.jpg"]
    assert body["results"][0]["score"] == pytest.approx(1.0, abs=1e-3)
    mixed = client.post(
        "/api/search", data={"q": "boat", **upload(data)}, headers=post_headers(token)
    )
    assert mixed.status_code == 200 and mixed.get_json()["query"].startswith("boat image:")


def test_api_image_and_similar(client, ids, photos):
    image_id = ids["big.jpg"]
    body = client.get(f"/api/images/{image_id}").get_json()
    assert body["id"] == image_id and body["path"] == str(photos["root"] / "big.jpg")
    assert (body["width"], body["height"]) == (1200, 800)
    assert body["thumb_url"] == f"/thumbs/{image_id}" and body["captions"] == []
    similar = client.get(f"/api/images/{image_id}/similar?k=4").get_json()
    assert len(similar["results"]) == 4
    assert image_id not in [h["id"] for h in similar["results"]]
    expected = photos["lib"].searcher.similar(image_id, 4).hits
    assert [h["id"] for h in similar["results"]] == [h.id for h in expected]
    assert client.get(f"/api/images/{image_id}/similar?k=x").status_code == 400


def test_api_caption_is_stored(client, token, photos, ids):
    image_id = ids["b/p6.jpg"]
    r = client.post(
        f"/api/images/{image_id}/captions", json={"text": "a kite"}, headers=post_headers(token)
    )
    assert r.status_code == 201
    assert r.get_json()["text"] == "a kite" and r.get_json()["image_id"] == image_id
    assert [c.text for c in photos["lib"].catalog.captions(image_id)] == ["a kite"]
    assert client.get(f"/api/images/{image_id}").get_json()["captions"][0]["text"] == "a kite"


@pytest.mark.parametrize(
    "body", [None, "text=a kite", [], {"text": ""}, {"text": 7}, {"text": "x" * 1001}, {}]
)
def test_api_caption_bad_bodies_are_400(client, token, ids, body):
    url = f"/api/images/{ids['b/p8.jpg']}/captions"
    if isinstance(body, str) or body is None:
        r = client.post(url, data=body or "", headers=post_headers(token))
    else:
        r = client.post(url, json=body, headers=post_headers(token))
    assert r.status_code == 400 and r.get_json()["error"]


def test_api_status_is_the_library_status(client, photos):
    body = client.get("/api/status").get_json()
    assert body.pop("warm_up")["state"] in ("loading", "ready")  # webui.warmup's own key
    assert body == json.loads(json.dumps(photos["lib"].status().to_json()))
    # And what the fixture made, known without asking the code under test:
    n = len(photos["ids"])
    assert body["images"] == n and body["failures"] == 1  # broken.jpg
    assert body["roots"] == [{"path": str(photos["root"]), "images": n, "available": True}]
    assert body["active_model"] == {"model": "imgsearch-tiny", "pretrained": "none"}
    assert body["serving_model"] == body["index"]["model_id"]
    assert body["serving_model"].startswith("imgsearch-tiny")
    assert body["index"]["count"] == n and body["index"]["current"] is True
    assert body["indexing"] is False


def test_api_failures_and_token(client, token, photos):
    failures = client.get("/api/failures").get_json()
    assert [f["path"] for f in failures] == [str(photos["root"] / "broken.jpg")]
    assert client.get("/api/csrf-token").get_json() == {"csrf_token": token}


# -- errors ---------------------------------------------------------------------------------
MISSING = 987654


@pytest.mark.parametrize(
    "url, html",
    [
        (f"/images/{MISSING}", True),
        (f"/api/images/{MISSING}", False),
        (f"/api/images/{MISSING}/similar", False),
        (f"/api/search?like={MISSING}", False),
        (f"/?like={MISSING}", True),
        (f"/files/{MISSING}", False),
        (f"/thumbs/{MISSING}", False),
        ("/no/such/page", True),
        ("/api/nothing", False),
        ("/static/nothing.js", False),
    ],
)
def test_unknown_things_are_404(client, url, html):
    r = client.get(url)
    assert r.status_code == 404
    if html:
        assert r.content_type.startswith("text/html") and "404" in r.get_data(as_text=True)
    else:
        assert r.get_json()["error"]


def test_posts_to_unknown_images_are_404(client, token):
    api = client.post(
        f"/api/images/{MISSING}/captions", json={"text": "x"}, headers=post_headers(token)
    )
    assert api.status_code == 404 and "no image" in api.get_json()["error"]
    page = client.post(
        f"/images/{MISSING}/captions",
        data={"text": "x", "csrf_token": token},
        headers={"Origin": "http://localhost"},
    )
    assert page.status_code == 404


def test_wrong_method_is_405(client):
    assert client.delete("/api/status").status_code == 405
    assert client.get(f"/api/images/{MISSING}/captions").status_code == 405


TRAVERSAL = [
    "/files/..%2f..%2fetc%2fpasswd",
    "/files/../../etc/passwd",
    "/files/%2e%2e/%2e%2e/etc/passwd",
    "/files/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/files/%252e%252e%252f%252e%252e%252fetc%252fpasswd",
    "/files/..%252f..%252fetc%252fpasswd",
    "/files/%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd",
    "/files/1/../../../etc/passwd",
    "/files/1%2f..%2f..%2fetc%2fpasswd",
    "/files/1;/etc/passwd",
    "/files//etc/passwd",
    "/files/%2fetc%2fpasswd",
    "/files/-1",
    "/files/0",
    "/files/1.0",
    "/files/0x1",
    "/files/%31",
    "/files/١",
    "/files/99999999999999999999",
    "/files/9223372036854775808",
    "/files/9223372036854775807",
    "/thumbs/-1",
    "/thumbs/99999999999999999999",
    "/thumbs/..%2f..%2fetc%2fpasswd",
    "/thumbs/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/images/99999999999999999999",
    "/images/-1",
    "/api/images/99999999999999999999",
    "/api/images/99999999999999999999/similar",
    "/api/images/-1",
    "/static/../search/catalog.py",
    "/static/..%2f..%2fsearch%2fcatalog.py",
    "/static/%2e%2e/%2e%2e/etc/passwd",
    "/static/%252e%252e/%252e%252e/etc/passwd",
    "/static//etc/passwd",
    "/?like=../../etc/passwd",
    "/api/search?q=x&path_prefix=../../etc",
]


@pytest.mark.parametrize("url", TRAVERSAL)
def test_traversal_battery_never_serves_foreign_bytes(client, photos, url):
    r = client.get(url, follow_redirects=True)  # "//" is merged by a redirect first
    body = r.get_data()
    assert r.status_code < 500
    assert b"root:x:0:0" not in body and b"sqlalchemy" not in body
    secret = (photos["outside"] / "secret.jpg").read_bytes()
    assert secret not in body
    if url.startswith(("/files/", "/thumbs/", "/images/", "/api/images/", "/static/")):
        # "%31" decodes to "1": a real id, served normally.
        assert r.status_code in (400, 404) or url == "/files/%31", (url, r.status_code)


def test_huge_ids_in_posts_are_404(client, token):
    r = client.post(
        "/api/images/99999999999999999999/captions",
        json={"text": "x"},
        headers=post_headers(token),
    )
    assert r.status_code == 404


# -- files and thumbnails ------------------------------------------------------------------
def test_original_is_served_by_id_with_cache_validators(client, photos, ids):
    path = photos["root"] / "a" / "p2.jpg"
    r = client.get(f"/files/{ids['a/p2.jpg']}")
    assert r.status_code == 200 and r.data == path.read_bytes()
    assert r.content_type == "image/jpeg" and r.headers["ETag"]
    assert "private" in r.headers["Cache-Control"]
    again = client.get(f"/files/{ids['a/p2.jpg']}", headers={"If-None-Match": r.headers["ETag"]})
    assert again.status_code == 304 and again.data == b""


def test_thumbnail_is_bounded_upright_jpeg_cached_atomically(client, photos, ids):
    thumbs_dir = photos["lib"].settings.thumbs_dir
    big = client.get(f"/thumbs/{ids['big.jpg']}")
    assert big.status_code == 200 and big.content_type == "image/jpeg"
    with Image.open(io.BytesIO(big.data)) as im:
        assert im.format == "JPEG" and max(im.size) == THUMB_SIDE
        assert im.size == (320, 213)
    rotated = client.get(f"/thumbs/{ids['rotated.jpg']}")
    with Image.open(io.BytesIO(rotated.data)) as im:
        assert im.size == (213, 320)  # EXIF orientation 6 applied: portrait
    small = client.get(f"/thumbs/{ids['a/p0.jpg']}")
    with Image.open(io.BytesIO(small.data)) as im:
        assert im.size == (96, 72)  # never enlarged
    cached = sorted(p.name for p in thumbs_dir.rglob("*.jpg"))
    assert any(n.startswith(f"{ids['big.jpg']}-") for n in cached)
    assert not [p for p in thumbs_dir.rglob("*") if p.name.endswith(".tmp")]
    assert "max-age" in big.headers["Cache-Control"] and "private" in big.headers["Cache-Control"]
    assert "public" not in big.headers["Cache-Control"]
    etag = big.headers["ETag"]
    assert (
        client.get(f"/thumbs/{ids['big.jpg']}", headers={"If-None-Match": etag}).status_code == 304
    )


def test_thumbnail_is_remade_when_the_file_changes(client, photos, ids):
    image_id = ids["changing.jpg"]
    first = client.get(f"/thumbs/{image_id}")
    make_jpeg(photos["root"] / "changing.jpg", 1234, size=(200, 100))
    second = client.get(f"/thumbs/{image_id}")
    assert second.status_code == 200
    assert second.headers["ETag"] != first.headers["ETag"] and second.data != first.data
    with Image.open(io.BytesIO(second.data)) as im:
        assert im.size == (200, 100)
    versions = list(photos["lib"].settings.thumbs_dir.rglob(f"{image_id}-*.jpg"))
    assert len(versions) == 1  # the stale one is gone


def test_symlink_swapped_in_after_indexing_is_refused(client, photos, ids):
    image_id = ids["victim.jpg"]
    victim = photos["root"] / "victim.jpg"
    assert client.get(f"/files/{image_id}").status_code == 200
    assert client.get(f"/thumbs/{image_id}").status_code == 200  # now cached
    victim.unlink()
    os.symlink(photos["outside"] / "secret.jpg", victim)
    for url in (f"/files/{image_id}", f"/thumbs/{image_id}"):
        r = client.get(url)
        assert r.status_code == 404, url
        assert "no longer inside" in r.get_json()["error"]
    victim.unlink()
    os.symlink(photos["outside"] / "passwd", victim)
    assert client.get(f"/files/{image_id}").status_code == 404


def test_folder_swapped_for_a_symlink_is_refused(client, photos, ids):
    image_id = ids["swapped_dir/inner.png"]
    folder = photos["root"] / "swapped_dir"
    assert client.get(f"/files/{image_id}").status_code == 200
    shutil.rmtree(folder)
    make_png(photos["outside"] / "elsewhere" / "inner.png", 77)
    os.symlink(photos["outside"] / "elsewhere", folder)
    assert client.get(f"/files/{image_id}").status_code == 404
    assert client.get(f"/thumbs/{image_id}").status_code == 404


@pytest.mark.skipif(not os.path.exists("/proc/self/fd"), reason="needs Linux's /proc")
def test_folder_swapped_between_the_check_and_the_open_is_refused(client, photos, ids, monkeypatch):
    """The race the path check alone leaves open: the swap lands after realpath().
    Each request starts from a real folder that the ordinary check accepts (the test
    before leaves it a symlink), and the swap must happen inside the request: only the
    open-time check can then refuse."""
    import webui.files

    image_id = ids["swapped_dir/inner.png"]
    folder = photos["root"] / "swapped_dir"
    make_png(photos["outside"] / "raced" / "inner.png", 78)
    real_open = os.open
    swapped = []

    def real_folder():
        if folder.is_symlink():
            folder.unlink()
        elif folder.exists():
            shutil.rmtree(folder)
        make_png(folder / "inner.png", 26)

    def swap_then_open(path, *args, **kwargs):
        if os.path.basename(path) == "inner.png" and not os.path.islink(folder):
            shutil.rmtree(folder)
            os.symlink(photos["outside"] / "raced", folder)
            swapped.append(path)
        return real_open(path, *args, **kwargs)

    for url in (f"/files/{image_id}", f"/thumbs/{image_id}"):
        real_folder()
        assert client.get(url).status_code == 200, url  # the ordinary check passes
        monkeypatch.setattr(webui.files.os, "open", swap_then_open)
        swapped.clear()
        r = client.get(url)
        monkeypatch.setattr(webui.files.os, "open", real_open)
        assert swapped, f"{url}: the folder was not swapped during the request"
        assert r.status_code == 404, url
        assert "no longer inside" in r.get_json()["error"]


def test_deleted_or_non_regular_file_is_404_without_hanging(client, photos, ids):
    image_id = ids["vanishing.jpg"]
    path = photos["root"] / "vanishing.jpg"
    path.unlink()
    assert client.get(f"/files/{image_id}").status_code == 404
    os.mkfifo(path)  # opening a FIFO for reading would block without O_NONBLOCK
    assert client.get(f"/files/{image_id}").status_code == 404
    assert client.get(f"/thumbs/{image_id}").status_code == 404
    assert client.get(f"/images/{image_id}").status_code == 200  # still catalogued


# -- security -------------------------------------------------------------------------------
def test_security_headers_on_every_kind_of_response(client, ids):
    for url in (
        "/",
        "/api/status",
        f"/files/{ids['a/p0.jpg']}",
        f"/thumbs/{ids['a/p0.jpg']}",
        "/static/app.js",
        "/api/images/0",
        "/nope",
    ):
        r = client.get(url)
        assert r.headers["X-Content-Type-Options"] == "nosniff", url
        assert r.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY, url
        assert r.headers["Referrer-Policy"] == "same-origin", url
        assert r.headers["X-Frame-Options"] == "DENY", url
    assert "default-src 'self'" in CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY
    assert "unsafe" not in CONTENT_SECURITY_POLICY and "http" not in CONTENT_SECURITY_POLICY


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "evil.example:8765",
        "localhost.evil.example",
        "127.0.0.1.nip.io",
        "",
        "local host",
        "[::2]:8765",
        "localhost:99999",
    ],
)
def test_foreign_host_header_is_400(client, host):
    for url in ("/", "/api/status", "/files/1", "/api/search?q=x"):
        r = client.get(url, headers={"Host": host})
        assert r.status_code == 400, (host, url)


@pytest.mark.parametrize(
    "host",
    ["localhost", "localhost:8765", "127.0.0.1", "127.0.0.1:8765", "[::1]:8765", "LOCALHOST:8765"],
)
def test_loopback_host_headers_are_accepted(client, host):
    assert client.get("/api/status", headers={"Host": host}).status_code == 200


def test_the_bound_host_is_trusted(photos, tmp_path):
    with Library(tiny_settings(tmp_path / "home", host="photos.lan")) as lib:
        app = create_app(library=lib)
        c = app.test_client()
        assert c.get("/api/status", headers={"Host": "photos.lan:8765"}).status_code == 200
        assert c.get("/api/status", headers={"Host": "other.lan:8765"}).status_code == 400


@pytest.mark.parametrize(
    "headers, expected",
    [
        ({}, 403),  # no token
        ({"X-CSRF-Token": "guess"}, 403),
        ({"X-CSRF-Token": "TOKEN", "Origin": "http://evil.example"}, 403),
        ({"X-CSRF-Token": "TOKEN", "Origin": "null"}, 403),
        ({"X-CSRF-Token": "TOKEN", "Origin": "http://localhost:9999"}, 403),
        ({"X-CSRF-Token": "TOKEN", "Referer": "http://evil.example/page"}, 403),
        ({"Origin": "http://localhost"}, 403),  # same origin is not enough without the token
        ({"X-CSRF-Token": "TOKEN", "Origin": "http://localhost"}, 201),
        ({"X-CSRF-Token": "TOKEN", "Referer": "http://localhost/images/1"}, 201),
        ({"X-CSRF-Token": "TOKEN"}, 201),  # a script (no Origin/Referer) with the token
    ],
)
def test_csrf_token_and_same_origin_on_api_posts(client, token, ids, headers, expected):
    headers = {k: v.replace("TOKEN", token) for k, v in headers.items()}
    r = client.post(f"/api/images/{ids['a/p3.jpg']}/captions", json={"text": "t"}, headers=headers)
    assert r.status_code == expected, r.get_data(as_text=True)
    if expected == 403:
        assert r.get_json()["error"]


def test_csrf_on_every_post_route(client, token, ids, photos):
    image_id = ids["a/p4.jpg"]
    data = (photos["root"] / "a" / "p4.jpg").read_bytes()
    posts = [
        ("/", {"image": (io.BytesIO(data), "q.jpg")}),
        ("/api/search", {"image": (io.BytesIO(data), "q.jpg")}),
        (f"/images/{image_id}/captions", {"text": "x"}),
        ("/models/some-model/use", {}),
        ("/models/train", {"out": "x"}),
        ("/api/models/some-model/use", {}),
        ("/api/train", {}),
    ]
    for url, form in posts:
        assert (
            client.post(url, data=form, headers={"Origin": "http://localhost"}).status_code == 403
        )
    cross = client.post(
        f"/images/{image_id}/captions",
        data={"text": "x", "csrf_token": token},
        headers={"Origin": "http://evil.example"},
    )
    assert cross.status_code == 403 and "reload" in cross.get_data(as_text=True).lower()
    assert photos["lib"].catalog.captions(image_id) == []


def test_oversized_upload_is_413(client, token):
    # A raw multipart body: the test client would spool a dict-built one to a temp file.
    big = b"\xff\xd8" + b"\0" * MAX_UPLOAD_BYTES
    body = (
        b'--B\r\nContent-Disposition: form-data; name="image"; filename="q.jpg"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n" + big + b"\r\n--B--\r\n"
    )
    multipart = "multipart/form-data; boundary=B"
    api = client.post("/api/search", data=body, content_type=multipart, headers=post_headers(token))
    assert api.status_code == 413 and api.get_json()["error"]
    page = client.post("/", data=body, content_type=multipart, headers=post_headers(token))
    assert page.status_code == 413 and "text/html" in page.content_type


@pytest.mark.parametrize(
    "data, reason",
    [
        (huge_png_bytes(), "too large"),
        (huge_png_bytes(12000, 12000), "too large"),  # 144 MP: under Pillow's own limit
        (b"just some text", "not an image"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "the image was refused"),
    ],
)
def test_bad_uploads_are_400_with_the_reason(client, token, data, reason):
    api = client.post("/api/search", data=upload(data), headers=post_headers(token))
    assert api.status_code == 400
    assert reason in api.get_json()["error"]
    page = client.post("/", data={"csrf_token": token, **upload(data)})
    assert page.status_code == 400 and reason in page.get_data(as_text=True).lower()


@pytest.mark.parametrize("form", [{}, {"image": (io.BytesIO(b""), "empty.jpg")}, {"q": "x"}])
def test_missing_or_empty_upload_is_400(client, token, form):
    r = client.post("/api/search", data=form, headers=post_headers(token))
    assert r.status_code == 400 and r.get_json()["error"]


# -- an empty library ------------------------------------------------------------------------
def test_empty_library_says_so(tmp_path, photos):
    with Library(tiny_settings(tmp_path / "empty")) as lib:
        c = create_app(library=lib).test_client()
        html = c.get("/?q=anything").get_data(as_text=True)
        assert "Nothing is indexed yet" in html and "imgsearch index" in html
        r = c.get("/api/search?q=anything")
        assert r.status_code == 409 and "nothing is indexed" in r.get_json()["error"]
        token = c.application.config["CSRF_TOKEN"]
        data = (photos["root"] / "a" / "p0.jpg").read_bytes()
        up = c.post("/api/search", data=upload(data), headers=post_headers(token))
        assert up.status_code == 409
        assert c.get("/api/status").get_json()["images"] == 0
        assert "No folders yet" in c.get("/status").get_data(as_text=True)
        assert "Every file found" in c.get("/failures").get_data(as_text=True)


def test_serve_command_defaults_to_localhost(monkeypatch):
    from search.cli import GlobalOptions, cli, settings_from

    monkeypatch.delenv("IMGSEARCH_HOST", raising=False)
    monkeypatch.delenv("IMGSEARCH_PORT", raising=False)
    with cli.make_context("imgsearch", ["serve"]) as ctx:
        serve = cli.get_command(ctx, "serve")
    assert serve.callback.__module__ == "webui.commands"
    params = serve.make_context("serve", []).params
    settings = settings_from(GlobalOptions(), host=params["host"], port=params["port"])
    assert (settings.host, settings.port) == ("127.0.0.1", 8765)
    params = serve.make_context("serve", ["--host", "0.0.0.0", "--port", "9000"]).params
    assert (params["host"], params["port"]) == ("0.0.0.0", 9000)


def test_a_full_disk_under_a_write_is_507_and_reads_go_on(client, token, photos, ids, monkeypatch):
    import sqlite3

    from sqlalchemy.exc import OperationalError

    def disk_full(*args, **kwargs):
        raise OperationalError("INSERT", {}, sqlite3.OperationalError("database or disk is full"))

    monkeypatch.setattr(photos["lib"].catalog, "add_caption", disk_full)
    url = f"/api/images/{ids['b/p8.jpg']}/captions"
    r = client.post(url, json={"text": "a dog"}, headers=post_headers(token))
    assert r.status_code == 507
    catalog = photos["lib"].settings.catalog_path
    assert r.get_json()["error"].startswith(f"disk full while writing the catalog at {catalog}")
    assert client.get("/api/search", query_string={"q": "a dog"}).status_code == 200
    assert client.get(f"/images/{ids['b/p8.jpg']}").status_code == 200


def test_hostile_file_names_are_indexed_and_served(tmp_path):
    """RELIABILITY 17: names with a newline, a carriage return, a tab, NFD accents, CJK,
    `%`, quotes and markup are indexed and served (the original with a header-safe
    Content-Disposition, not a 500); a name that is not UTF-8 is listed, not fatal."""
    import html
    import unicodedata

    names = [
        "line\nbreak.jpg",
        "semi;colon\r.jpg",
        "tab\there.jpg",
        unicodedata.normalize("NFD", "café.jpg"),
        "鳥.jpg",
        "100%_done.jpg",
        XSS_NAME,
    ]
    folder = tmp_path / "photos"
    for i, name in enumerate(names):
        make_jpeg(folder / name, i)
    raw = os.path.join(os.fsencode(folder), b"caf\xe9.jpg")
    shutil.copyfile(folder / names[0], raw)
    with Library(tiny_settings(tmp_path / "home")) as lib:
        report = sync(lib, [str(folder)], progress=False)
        assert (report.added, report.failed) == (len(names), 1)
        client = create_app(library=lib).test_client()
        by_name = {
            os.path.basename(m.path): i
            for i, m in lib.catalog.images(lib.catalog.filter_ids()).items()
        }
        assert set(by_name) == set(names)
        for name, image_id in by_name.items():
            r = client.get(f"/files/{image_id}", buffered=True)
            assert r.status_code == 200, name
            assert r.data == (folder / name).read_bytes()
            disposition = r.headers["Content-Disposition"]
            assert not re.search(r"[\x00-\x1f\x7f]", disposition), disposition
            assert client.get(f"/thumbs/{image_id}").status_code == 200
            page = client.get(f"/images/{image_id}")
            assert page.status_code == 200
            assert name in html.unescape(page.get_data(as_text=True))
        assert "<img src=x onerror" not in client.get(f"/images/{by_name[XSS_NAME]}").get_data(
            as_text=True
        )
