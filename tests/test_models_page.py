"""The Models page and its API through Flask's test client: the listing with metrics and
curves, the curves route, refusals (CSRF, too few captions, bad names, a job already
running), and background jobs run for real: making a saved model active re-indexes in a
subprocess while searches keep answering with the old model, then switch."""

from __future__ import annotations

import io
import json
import shutil
import time
from urllib.parse import quote

import pytest
from imagetree import make_jpeg
from PIL import Image
from savedmodel import train_saved_model
from tinylib import tiny_settings

from indexer.sync.run import sync
from search.library import Library
from search.models.spec import CURVES, SIDECAR
from search.settings import Settings
from webui import create_app
from webui.jobs import MIN_CAPTIONED_IMAGES, JobRunner, Stage, child_env

XSS_NAME = "<img src=x onerror=alert(1)>"
MODEL_KEYS = {
    "name",
    "model_id",
    "spec",
    "base",
    "pairs",
    "metrics",
    "created_at",
    "vectors",
    "active",
    "serving",
    "curves_url",
    "use_url",
}
JOB_KEYS = {
    "id",
    "kind",
    "title",
    "target",
    "state",
    "stage",
    "stage_number",
    "stages",
    "desc",
    "done",
    "total",
    "unit",
    "rate",
    "postfix",
    "message",
    "exit_code",
    "result",
    "started_at",
    "finished_at",
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A saved model ("second"), trained once for the module; copied into each home."""
    base = tmp_path_factory.mktemp("trained")
    train_saved_model(base / "home", "second", base / "pairs")
    return base / "home" / "models" / "second"


def indexed_home(base, trained, n: int = 8):
    """A home with `n` photos indexed with the tiny model and the saved model beside."""
    root = base / "photos"
    for i in range(n):
        make_jpeg(root / f"p{i}.jpg", i)
    settings = tiny_settings(base / "home", workers=1)
    shutil.copytree(trained, settings.models_dir / "second")
    lib = Library(settings)
    sync(lib, [str(root)], progress=False)
    return lib


@pytest.fixture(scope="module")
def shared(tmp_path_factory, trained):
    """One library for the tests that do not switch models; a model with an HTML name."""
    lib = indexed_home(tmp_path_factory.mktemp("models"), trained)
    odd = lib.settings.models_dir / XSS_NAME
    shutil.copytree(trained, odd)
    sidecar = json.loads((odd / SIDECAR).read_text())
    del sidecar["model_id"]  # its id is then its own (name + weights digest)
    (odd / SIDECAR).write_text(json.dumps(sidecar))
    (odd / CURVES).unlink()
    yield lib
    lib.close()


@pytest.fixture(scope="module")
def app(shared):
    return create_app(library=shared)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def token(app):
    return app.config["CSRF_TOKEN"]


def post_headers(token: str) -> dict:
    return {"X-CSRF-Token": token, "Origin": "http://localhost"}


def by_name(doc: dict) -> dict:
    return {m["name"] or m["model_id"]: m for m in doc["models"]}


# -- the listing ------------------------------------------------------------------------------
def test_api_lists_indexed_and_saved_models_with_metrics(client, shared):
    doc = client.get("/api/models").get_json()
    assert set(doc) == {"active", "serving", "models", "job", "training"}
    assert doc["job"] is None
    assert doc["active"] == {"model": "imgsearch-tiny", "pretrained": "none"}
    models = by_name(doc)
    assert all(set(m) == MODEL_KEYS for m in models.values())
    tiny = models[doc["serving"]]
    assert tiny["active"] and tiny["serving"] and tiny["vectors"] == 8
    assert tiny["name"] is None and tiny["metrics"] is None and tiny["curves_url"] is None

    second = models["second"]
    assert not second["active"] and not second["serving"] and second["vectors"] == 0
    assert second["model_id"].startswith("second/sha256:")
    assert second["base"] == doc["serving"]  # trained from the tiny model
    assert second["pairs"] == {"train": 30, "val": 10, "skipped": 0}
    assert set(second["metrics"]) == {"before", "after", "best_epoch"}
    assert second["metrics"]["after"]["text_to_image"]["n"] == 10
    assert second["created_at"] and second["curves_url"] == "/models/second/curves.png"
    assert second["use_url"] == "/api/models/second/use"
    assert models[XSS_NAME]["curves_url"] is None
    captions = shared.catalog.captions()
    assert doc["training"] == {
        "pairs": len(captions),
        "captioned_images": len({c.image_id for c in captions}),
        "min_captioned_images": MIN_CAPTIONED_IMAGES,
    }


def test_cli_models_lists_the_same(shared, capsys):
    from search.cli import main

    assert main(["--home", str(shared.settings.home), "models", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert sorted(out["saved"]) == sorted(["second", XSS_NAME])
    assert [m["vectors"] for m in out["models"]] == [8]


def test_curves_are_served_for_listed_models_only(client, shared):
    r = client.get("/models/second/curves.png")
    assert r.status_code == 200 and r.mimetype == "image/png"
    with Image.open(io.BytesIO(r.data)) as im:
        assert im.format == "PNG" and im.width > 800
    for url in (
        "/models/unknown/curves.png",
        f"/models/{quote(XSS_NAME)}/curves.png",  # listed, but saved without curves
        "/models/..%2F..%2Fetc/curves.png",
        "/models/%2E%2E/curves.png",
        "/models/.second.tmp/curves.png",
        f"/models/{shared.serving_model.split('/')[0]}/curves.png",
    ):
        assert client.get(url).status_code == 404, url
    r.close()


def test_the_trained_model_has_its_curves_file(trained):
    with Image.open(trained / CURVES) as im:
        im.load()
        assert im.format == "PNG" and im.size[0] > 800 and im.size[1] > 250
        assert len(im.convert("L").getcolors(maxcolors=256 * 256) or []) > 10  # drawn, not blank


def test_page_shows_cards_badges_curves_and_forms(client, token):
    r = client.get("/models")
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert '<a href="/models">Models</a>' in html
    assert html.count('class="model') >= 3
    assert '<span class="badge serving">serving</span>' in html
    assert '<img src="/models/second/curves.png"' in html
    assert 'action="/models/second/use"' in html
    assert "Make active" in html and "Fine-tune on my captions" in html
    assert f'name="csrf_token" value="{token}"' in html
    assert XSS_NAME not in html  # escaped wherever it is shown
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert 'id="job"' in html and "hidden" in html  # no job yet
    assert "Validation text→image recall" in html


# -- refusals -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path, body",
    [
        ("/api/models/second/use", None),
        ("/api/train", {}),
        ("/models/second/use", None),
        ("/models/train", None),
    ],
)
@pytest.mark.parametrize(
    "headers",
    [{}, {"X-CSRF-Token": "guess"}, {"X-CSRF-Token": "TOKEN", "Origin": "http://evil.example"}],
)
def test_state_changing_posts_need_the_token_and_same_origin(client, token, path, body, headers):
    headers = {k: v.replace("TOKEN", token) for k, v in headers.items()}
    r = client.post(path, json=body, headers=headers)
    assert r.status_code == 403
    assert client.get("/api/jobs/current").get_json() == {"state": "idle"}


def test_fine_tuning_with_too_few_captions_is_refused_clearly(client, token, shared):
    ids = shared.catalog.filter_ids().tolist()
    shared.catalog.add_caption(ids[0], "a photo with a caption")
    r = client.post("/api/train", json={}, headers=post_headers(token))
    assert r.status_code == 400
    message = r.get_json()["error"]
    assert f"at least {MIN_CAPTIONED_IMAGES} photos" in message and "1 have one" in message
    page = client.post(
        "/models/train", data={"csrf_token": token}, headers={"Origin": "http://localhost"}
    )
    assert page.status_code == 400
    html = page.get_data(as_text=True)
    assert 'id="models-error"' in html and f"at least {MIN_CAPTIONED_IMAGES} photos" in html
    assert client.get("/api/jobs/current").get_json() == {"state": "idle"}


@pytest.mark.parametrize(
    "body, status, message",
    [
        ({"out": "../escape"}, 400, "one plain name"),
        ({"out": ".hidden"}, 400, "one plain name"),
        ({"out": "x" * 101}, 400, "at most 100"),
        ({"out": "second"}, 409, "exists already"),
        ({"out": "imgsearch-tiny"}, 409, "exists already"),
        ({"epochs": 0}, 400, "between 1 and"),
        ({"epochs": "many"}, 400, "whole number"),
        ([1, 2], 400, "send JSON like"),
    ],
)
def test_bad_training_requests_are_400_or_409(client, token, body, status, message):
    r = client.post("/api/train", json=body, headers=post_headers(token))
    assert r.status_code == status
    assert message in r.get_json()["error"]


def test_unknown_model_cannot_be_made_active(client, token):
    r = client.post("/api/models/nothing-like-it/use", headers=post_headers(token))
    assert r.status_code == 404
    assert "no model named" in r.get_json()["error"]


def test_jobs_current_is_idle_before_any_job(client):
    assert client.get("/api/jobs/current").get_json() == {"state": "idle"}


# -- the job runner ------------------------------------------------------------------------------
def test_child_env_carries_the_server_settings_but_not_its_model(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGSEARCH_MODEL", "ViT-L-14")
    monkeypatch.setenv("IMGSEARCH_SOMETHING_OLD", "x")
    settings = tiny_settings(tmp_path, exclude=("*.tmp", "raw/*"), max_megapixels=12.5)
    env = child_env(settings, tmp_path / "jobs" / "progress.json")
    assert "IMGSEARCH_MODEL" not in env and "IMGSEARCH_PRETRAINED" not in env
    assert "IMGSEARCH_SOMETHING_OLD" not in env and "IMGSEARCH_HOME" not in env
    child = Settings.load(env, home=tmp_path)
    for name in ("device", "precision", "workers", "batch_size", "max_megapixels", "exclude"):
        assert getattr(child, name) == getattr(settings, name), name
    assert child.model is None and child.progress_file == tmp_path / "jobs" / "progress.json"


def test_a_failing_job_reports_the_commands_own_message(tmp_path):
    with Library(tiny_settings(tmp_path / "home")) as lib:
        app = create_app(library=lib)
        runner: JobRunner = app.extensions["imgsearch.jobs"]
        nowhere = tmp_path / "no"
        runner.start("use", "Index nowhere", [Stage("indexing", ("index", str(nowhere)))], "x")
        assert runner.wait(120)
        job = app.test_client().get("/api/jobs/current").get_json()
        assert job["state"] == "failed" and job["exit_code"] == 1
        assert job["message"] == f"{nowhere}: not a folder"
        assert job["finished_at"] and job["stage"] == "indexing"
        html = app.test_client().get("/models").get_data(as_text=True)
        assert 'class="notice job error"' in html
        assert f"Failed: {nowhere}: not a folder (exit code 1)" in html


# -- jobs end to end ---------------------------------------------------------------------------
@pytest.mark.slow
def test_making_a_saved_model_active_reindexes_while_search_keeps_answering(tmp_path, trained):
    lib = indexed_home(tmp_path, trained, n=12)
    try:
        app = create_app(library=lib)
        client = app.test_client()
        token = app.config["CSRF_TOKEN"]
        old = lib.serving_model

        r = client.post("/api/models/second/use", headers=post_headers(token))
        assert r.status_code == 202
        job = r.get_json()
        assert set(job) == JOB_KEYS
        assert job["state"] == "running" and job["kind"] == "use" and job["stages"] == 2
        busy = client.post("/api/models/second/use", headers=post_headers(token))
        assert busy.status_code == 409 and "still running" in busy.get_json()["error"]
        by_id = client.post(f"/api/models/{old}/use", headers=post_headers(token))
        assert by_id.status_code == 409  # found by its id; refused only because of the job
        running = client.get("/models").get_data(as_text=True)
        assert 'data-state="running"' in running and "Step " in running
        assert '<noscript><meta http-equiv="refresh" content="3"></noscript>' in running
        assert running.count("disabled") >= 2  # no second job from the page meanwhile
        assert client.post("/api/train", json={}, headers=post_headers(token)).status_code == 409

        seen, stages = [], set()
        deadline = time.monotonic() + 180
        while True:
            job = client.get("/api/jobs/current").get_json()
            stages.add(job["stage"])
            r = client.get("/api/search?q=a+red+square&k=3")
            assert r.status_code == 200, r.get_json()
            seen.append(r.get_json()["model_id"])
            if job["state"] != "running":
                break
            assert time.monotonic() < deadline, job
            time.sleep(0.05)

        assert job["state"] == "done", job
        assert job["exit_code"] == 0 and "second is active and serving" in job["message"]
        assert job["stage"] == "re-indexing" and "re-indexing" in stages
        assert job["desc"] == "indexing" and job["done"] == job["total"] == 12
        assert job["result"]["embedded"] == 12
        new = job["result"]["model_id"]
        assert new.startswith("second/") and new != old
        # The old model until the new index was complete, then only the new one.
        switch = seen.index(new) if new in seen else len(seen)
        assert seen[0] == old and set(seen[:switch]) == {old} and set(seen[switch:]) <= {new}
        assert client.get("/api/search?q=sky").get_json()["model_id"] == new

        doc = client.get("/api/models").get_json()
        second = by_name(doc)["second"]
        assert second["active"] and second["serving"] and second["vectors"] == 12
        assert doc["serving"] == new and doc["job"]["state"] == "done"
        html = client.get("/models").get_data(as_text=True)
        assert "Done: second is active and serving" in html
        # The tiny model has no saved name: it is named by its id (a path, slashes and all).
        tiny = by_name(doc)[old]
        assert tiny["use_url"] == f"/api/models/{old}/use" and f'action="/models/{old}/use"' in html
    finally:
        lib.close()


@pytest.mark.slow
def test_fine_tuning_on_the_captions_saves_a_new_model(tmp_path, trained):
    lib = indexed_home(tmp_path, trained, n=MIN_CAPTIONED_IMAGES)
    try:
        for i, image_id in enumerate(lib.catalog.filter_ids().tolist()):
            lib.catalog.add_caption(image_id, f"photo number {i} with noise")
        app = create_app(library=lib)
        client = app.test_client()
        r = client.post(
            "/api/train",
            json={"out": "from-captions", "epochs": 1},
            headers=post_headers(app.config["CSRF_TOKEN"]),
        )
        assert r.status_code == 202, r.get_json()
        assert r.get_json()["title"] == "Fine-tune from-captions on my captions"
        assert app.extensions["imgsearch.jobs"].wait(300)
        job = client.get("/api/jobs/current").get_json()
        assert job["state"] == "done", job
        assert job["result"]["name"] == "from-captions"
        assert job["message"].startswith("saved from-captions")
        models = by_name(client.get("/api/models").get_json())
        made = models["from-captions"]
        assert made["pairs"]["train"] + made["pairs"]["val"] == MIN_CAPTIONED_IMAGES
        assert made["base"] == lib.serving_model
        assert not made["active"] and made["curves_url"]
        with client.get(made["curves_url"]) as curves:
            assert curves.status_code == 200
    finally:
        lib.close()
