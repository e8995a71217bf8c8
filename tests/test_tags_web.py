"""Tags on the web (issue 14): the JSON API, the pages' tag facets, teaching from the
grid and the image page, describe, and hostile tag names escaped."""

from __future__ import annotations

import pytest
from imagetree import make_jpeg
from test_webui import BufferedClient, post_headers
from tinylib import tiny_settings

from indexer.sync.run import sync
from search.library import Library
from webui import create_app

HOSTILE = '<script>alert("x")</script> café'


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    base = tmp_path_factory.mktemp("tagsweb")
    root = base / "photos"
    for i in range(16):
        make_jpeg(root / f"p{i:02d}.jpg", i)
    library = Library(tiny_settings(base / "home"))
    sync(library, [str(root)], progress=False)
    library.catalog.add_caption(2, "a dog asleep on a red sofa")
    yield library
    library.close()


@pytest.fixture(scope="module")
def app(lib):
    app = create_app(library=lib, warm_up=False)
    app.test_client_class = BufferedClient
    return app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def headers(app):
    return post_headers(app.config["CSRF_TOKEN"])


def test_tags_api_add_teach_list_search_describe_remove(client, headers, lib):
    made = client.post(
        "/api/tags", json={"name": "Sunset", "prompts": ["a sunset"]}, headers=headers
    )
    assert made.status_code == 201, made.json
    assert set(made.json) == {"name", "kind", "count", "threshold", "prompts"}
    assert made.json["name"] == "sunset" and made.json["prompts"] == ["a sunset"]
    taught = client.post(
        "/api/tags/blob/examples", json={"yes": [1, 3], "no": [5]}, headers=headers
    )
    assert taught.status_code == 200 and taught.json["kind"] == "probe"
    listed = client.get("/api/tags").json["tags"]
    assert [t["name"] for t in listed] == ["blob", "sunset"]
    found = client.get("/api/search?q=x&k=50&tag=blob").json["results"]
    assert {1, 3} <= {h["id"] for h in found} and 5 not in {h["id"] for h in found}
    assert all("blob" in h["tags"] for h in found)
    both = client.get("/api/search?q=x&k=50&tag=blob&tag=sunset").json["results"]
    assert {h["id"] for h in both} <= {h["id"] for h in found}
    assert "blob" in client.get("/api/images/1").json["tags"]
    described = client.get("/api/images/2/describe?k=3").json
    assert set(described) == {"model_id", "tags", "captions"}
    assert described["captions"][0] == {
        "text": "a dog asleep on a red sofa",
        "score": described["captions"][0]["score"],
    }
    assert {t["name"] for t in described["tags"]} <= {"blob", "sunset"}
    assert client.delete("/api/tags/blob", headers=headers).status_code == 204
    assert [t["name"] for t in client.get("/api/tags").json["tags"]] == ["sunset"]


@pytest.mark.parametrize(
    ("method", "url", "body", "status", "message"),
    [
        ("post", "/api/tags", {"prompts": ["x"]}, 400, "name needs some text"),
        ("post", "/api/tags", ["sunset"], 400, "send JSON like"),
        ("post", "/api/tags", {"name": "x", "prompts": "x"}, 400, "prompts must be a list"),
        ("post", "/api/tags", {"name": "x" * 101}, 400, "at most 100 characters"),
        ("post", "/api/tags/blob/examples", {"yes": [999]}, 404, "no image with id 999"),
        ("post", "/api/tags/blob/examples", {"yes": ["1"]}, 400, "positive whole numbers"),
        ("post", "/api/tags/blob/examples", {}, 400, "give images"),
        ("post", "/api/tags/blob/examples", {"yes": [1], "no": [1]}, 400, "both"),
        ("delete", "/api/tags/nope", None, 404, "no tag named 'nope'"),
        ("get", "/api/search?q=x&tag=nope", None, 400, "no tag named 'nope'"),
        ("get", "/api/images/999/describe", None, 404, "no image with id 999"),
        ("get", "/api/images/1/describe?k=0", None, 400, "k must be"),
    ],
)
def test_tags_api_refuses_bad_input(client, headers, method, url, body, status, message):
    kwargs = {"headers": headers} if method != "get" else {}
    if body is not None:
        kwargs["json"] = body
    got = getattr(client, method)(url, **kwargs)
    assert got.status_code == status, got.json
    assert message in got.json["error"]


def test_changing_tags_needs_the_token(client):
    assert client.post("/api/tags", json={"name": "x"}).status_code == 403
    assert client.delete("/api/tags/x").status_code == 403
    assert client.post("/images/1/tags", data={"name": "x", "mark": "yes"}).status_code == 403


def test_teaching_from_the_grid_and_the_image_page(client, app, lib):
    token = app.config["CSRF_TOKEN"]
    page = client.get("/?q=x&teach=Our+Dog").get_data(as_text=True)
    # Every card carries "is / is not" buttons for the tag being taught.
    assert page.count('name="mark" value="yes"') >= 10
    assert 'value="our dog"' in page
    back = "/?q=x&teach=our+dog"
    got = client.post(
        "/images/4/tags",
        data={"name": "our dog", "mark": "yes", "next": back, "csrf_token": token},
        headers={"Origin": "http://localhost"},
    )
    assert got.status_code == 303 and got.headers["Location"].endswith(back)
    assert "our dog" in client.get("/api/images/4").json["tags"]
    # Another site's address is never where a mark sends the browser.
    got = client.post(
        "/images/6/tags",
        data={"name": "our dog", "mark": "no", "next": "//evil.example/", "csrf_token": token},
        headers={"Origin": "http://localhost"},
    )
    assert got.headers["Location"].endswith("/images/6#tags")
    assert "our dog" not in client.get("/api/images/6").json["tags"]
    # The facets: each tag a link that filters by it; an active one removes itself.
    page = client.get("/?q=x").get_data(as_text=True)
    assert 'class="tag-facets"' in page and "tag=our+dog" in page
    active = client.get("/?q=x&tag=our+dog").get_data(as_text=True)
    assert 'class="tag active"' in active
    image = client.get("/images/4").get_data(as_text=True)
    assert 'id="tags"' in image and ">our dog</a>" in image and 'id="describe"' in image


def test_hostile_tag_names_are_escaped(client, app, lib):
    token = app.config["CSRF_TOKEN"]
    client.post(
        "/images/7/tags",
        data={"name": HOSTILE, "mark": "yes", "csrf_token": token},
        headers={"Origin": "http://localhost"},
    )
    stored = HOSTILE.lower()
    assert stored in [t["name"] for t in client.get("/api/tags").json["tags"]]
    for url in ("/?q=x", "/images/7", f"/?q=x&teach={HOSTILE}"):
        page = client.get(url).get_data(as_text=True)
        assert "<script>alert" not in page
        assert "&lt;script&gt;alert" in page
