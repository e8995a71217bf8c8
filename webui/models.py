"""The Models page and its API: the library's models with their training metrics and
curves, making one active (a background re-index), fine-tuning on the library's captions
(a background training run), and the progress of that job.

Models are looked up by a saved model's name or a model id from the listing, never by a
path taken from the URL; jobs run the CLI in a subprocess (webui.jobs).
"""

from __future__ import annotations

import re

from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from werkzeug.exceptions import HTTPException

from search.library import Library
from search.models.listing import ModelEntry, ModelListing, list_models
from search.settings import Settings
from webui.api import library
from webui.jobs import MIN_CAPTIONED_IMAGES, JobBusy, JobRunner, Stage

bp = Blueprint("models", __name__)

JOBS = "imgsearch.jobs"
MAX_EPOCHS = 1_000
MAX_NAME_CHARS = 100
# A new model's name becomes a folder name and a command-line value: one plain name.
_BAD_NAME = re.compile(r"[/\\\x00-\x1f\x7f]")


def init_app(app: Flask, settings: Settings) -> None:
    app.extensions[JOBS] = JobRunner(settings)
    app.register_blueprint(bp)


def jobs() -> JobRunner:
    return current_app.extensions[JOBS]


def listing() -> ModelListing:
    lib = library()
    return list_models(lib, active=lib.recorded_active_spec())


def _dict(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def model_json(entry: ModelEntry) -> dict:
    sidecar = entry.saved.sidecar if entry.saved else {}
    metrics = _dict(sidecar.get("metrics"))
    return {
        "name": entry.name,
        "model_id": entry.model_id,
        "spec": entry.spec.as_dict(),
        "base": _dict(sidecar.get("base")).get("model_id"),
        "pairs": sidecar.get("pairs") if isinstance(sidecar.get("pairs"), dict) else None,
        "metrics": {
            "before": _dict(metrics.get("before")),
            "after": _dict(metrics.get("after")),
            "best_epoch": metrics.get("best_epoch"),
        }
        if metrics
        else None,
        "created_at": sidecar.get("created_at"),
        "vectors": entry.vectors,
        "active": entry.active,
        "serving": entry.serving,
        "curves_url": url_for("models.curves", name=entry.name)
        if entry.saved and entry.saved.curves
        else None,
        # URLs name a saved model by its name, any other by its id.
        "use_url": url_for("models.api_use", name=entry.name or entry.model_id or ""),
    }


def training_state(lib: Library) -> dict:
    captions = lib.catalog.captions()
    return {
        "pairs": len(captions),
        "captioned_images": len({c.image_id for c in captions}),
        "min_captioned_images": MIN_CAPTIONED_IMAGES,
    }


def models_json() -> dict:
    found = listing()
    return {
        "active": found.active.as_dict(),
        "serving": found.serving,
        "models": [model_json(e) for e in found.entries],
        "job": jobs().current(),
        "training": training_state(library()),
    }


# -- starting jobs ---------------------------------------------------------------------------
def start_use(key: str) -> dict:
    """Make the model `key` names active and re-index with it, in the background."""
    entry = listing().find(key)
    if entry is None:
        abort(404, f"no model named {key!r} in this library")
    lib = library()
    _not_busy()
    if lib.lock.held_elsewhere():
        abort(409, "an index run is in progress: try again when it has finished")
    model = entry.spec.model or ""
    pretrained = entry.spec.pretrained
    use = ["use", *([f"--pretrained={pretrained}"] if pretrained else []), "--", model]
    shown = entry.name or entry.model_id or model
    stages = [
        Stage("making it active", tuple(use)),
        Stage("re-indexing", ("index", "--json", "--quiet")),
    ]

    def summary(report: dict | None) -> str:
        if not report:
            return f"{shown} is active"
        return (
            f"{shown} is active and serving: {report.get('embedded', 0)} images embedded "
            f"in {report.get('elapsed_s', 0):.0f} s"
        )

    return _start("use", f"Make {shown} active", stages, shown, summary)


def start_training(out: object, epochs: object) -> dict:
    """Fine-tune the active model on the library's captions, in the background."""
    lib = library()
    _not_busy()
    # A new name is neither a saved model's nor one the catalog's models go by
    # ("imgsearch-tiny"): a saved folder of that name would be loaded in the model's place.
    found = listing()
    name = _new_name(out, {s.name for s in found.saved} | {e.spec.model for e in found.entries})
    args = ["train", "--from-catalog", "--json", f"--out={name}"]
    if epochs not in (None, ""):
        args.append(f"--epochs={_epochs(epochs)}")
    state = training_state(lib)
    if state["captioned_images"] < MIN_CAPTIONED_IMAGES:
        abort(
            400,
            f"fine-tuning needs captions on at least {MIN_CAPTIONED_IMAGES} photos, and "
            f"{state['captioned_images']} have one: add captions on the photos' pages "
            "(a photo's own words for what it shows), then try again",
        )
    settings = lib.settings
    if settings.model:  # the server names a model: that is where training starts from
        args.append(f"--model={settings.model}")
        if settings.pretrained:
            args.append(f"--pretrained={settings.pretrained}")

    def summary(report: dict | None) -> str:
        after = _dict(_dict((report or {}).get("after")).get("text_to_image"))
        before = _dict(_dict((report or {}).get("before")).get("text_to_image"))
        line = f"saved {name}: make it active to search with it"
        if "recall@10" in after and "recall@10" in before:
            line += f" (validation recall@10 {before['recall@10']:.2f} → {after['recall@10']:.2f})"
        return line

    return _start(
        "train", f"Fine-tune {name} on my captions", [Stage("training", tuple(args))], name, summary
    )


def _not_busy() -> None:
    job = jobs().current()
    if job is not None and job["state"] == "running":
        abort(409, f"“{job['title']}” is still running: wait for it to finish, then try again")


def _start(kind, title, stages, target, summary) -> dict:
    try:
        jobs().start(kind, title, stages, target, summary)
    except JobBusy as exc:
        abort(409, str(exc))
    return jobs().current() or {}


def _new_name(raw: object, taken: set[str]) -> str:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        base, n = "my-captions", 1
        while (name := f"{base}-{n}") in taken:
            n += 1
        return name
    if not isinstance(raw, str):
        abort(400, "out must be a name")
    name = raw.strip()
    if name.startswith(".") or _BAD_NAME.search(name) or len(name) > MAX_NAME_CHARS:
        abort(
            400,
            f"a model name is one plain name of at most {MAX_NAME_CHARS} characters, without "
            "slashes or a leading dot",
        )
    if name in taken:
        abort(409, f"a model named {name!r} exists already: choose another name")
    return name


def _epochs(raw: object) -> int:
    try:
        epochs = int(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        abort(400, "epochs must be a whole number")
    if isinstance(raw, bool) or not 1 <= epochs <= MAX_EPOCHS:
        abort(400, f"epochs must be between 1 and {MAX_EPOCHS}")
    return epochs


# -- routes ------------------------------------------------------------------------------
@bp.get("/models")
def page():
    return render_models()


def render_models(error: str | None = None, status: int = 200):
    doc = models_json()
    return render_template("models.html", doc=doc, error=error), status


@bp.post("/models/<path:name>/use")
def use(name: str):
    return _form(lambda: start_use(name))


@bp.post("/models/train")
def train():
    return _form(lambda: start_training(request.form.get("out"), request.form.get("epochs")))


def _form(start):
    """A form post from the page: on to the page (post/redirect/get), or the page again
    with the refusal."""
    try:
        start()
    except HTTPException as exc:
        if exc.code == 404:
            raise
        return render_models(exc.description, exc.code or 400)
    return redirect(url_for("models.page", _anchor="job"), code=303)


@bp.get("/models/<name>/curves.png")
def curves(name: str):
    entry = listing().find(name)
    path = entry.saved.curves if entry is not None and entry.saved is not None else None
    if path is None or entry.name != name:
        abort(404, f"no training curves for a model named {name!r}")
    return send_file(path, mimetype="image/png", max_age=0)


@bp.get("/api/models")
def api_models():
    return jsonify(models_json())


@bp.post("/api/models/<path:name>/use")
def api_use(name: str):
    return jsonify(start_use(name)), 202


@bp.post("/api/train")
def api_train():
    body = request.get_json(silent=True)
    if body is None and not request.data:
        body = {}
    if not isinstance(body, dict):
        abort(400, 'send JSON like {"out": "my-model", "epochs": 5} (both optional)')
    return jsonify(start_training(body.get("out"), body.get("epochs"))), 202


@bp.get("/api/jobs/current")
def current_job():
    job = jobs().current()
    return jsonify(job if job is not None else {"state": "idle"})
