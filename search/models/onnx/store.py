"""Where a model's ONNX export lives, what its manifest says, and whether it still belongs
to the model a command is about to use.

One folder per model id under ``cache/onnx/``, written whole into a temporary folder and
renamed into place, so a reader sees a complete export or none. The id is the model's
architecture + weights fingerprint, so another model (other weights, `imgsearch use`, a
retrained model saved under the same name) never finds this folder; and the manifest
keeps the digest of the weights file it was made from, checked again before use, for a
weights file replaced under a name whose recorded id did not change.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from search.errors import ModelError
from search.models.spec import (
    ModelSource,
    ModelSpec,
    quick_model_id,
    read_json_object,
    resolve,
    weights_digest,
    weights_file,
)

# Bumped when the layout or the export itself changes: older exports are then not used,
# and a model refused by an older exporter is tried again.
FORMAT = 1
MANIFEST = "export.json"
REFUSED = "refused.json"


@dataclass(frozen=True)
class TextTower:
    file: str
    context_length: int
    # Causal attention pooled at the end token: tokens after the longest text's end
    # token change nothing, so they are not fed (a 5-word query runs 7 positions, not 77).
    trim: bool


@dataclass(frozen=True)
class ImageTower:
    file: str
    size: int
    resize_mode: str
    resample: str


@dataclass(frozen=True)
class Export:
    model_id: str
    folder: Path
    dim: int
    source: dict  # ModelSource's fields, weights as a string
    weights_digest: str | None
    text: TextTower | None
    image: ImageTower | None
    min_cosine: dict  # measured against torch when exported: {"text": ..., "image": ...}
    runtime: str  # the onnxruntime version that optimised the files

    def model_source(self) -> ModelSource:
        src = dict(self.source)
        src["weights"] = Path(src["weights"]) if src.get("weights") else None
        src["spec"] = ModelSpec.from_dict(src["spec"])  # the manifest stores its dict form
        return ModelSource(**src)

    def manifest(self) -> dict:
        doc = asdict(self)
        doc.pop("folder")
        return {"format": FORMAT, **doc}


def folder_for(cache_dir: Path, model_id: str) -> Path:
    """A readable, collision-free folder name for a model id ('/' and ':' are in ids)."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "-", model_id).strip("-.")[:80]
    digest = hashlib.sha256(model_id.encode()).hexdigest()[:10]
    return cache_dir / "onnx" / f"{readable}-{digest}"


def find(cache_dir: Path, model_id: str) -> Export | None:
    """The complete export of `model_id`, or None (none, unreadable, or an older format)."""
    folder = folder_for(cache_dir, model_id)
    try:
        doc = json.loads((folder / MANIFEST).read_text())
        if doc.get("format") != FORMAT or doc.get("model_id") != model_id:
            return None
        text, image = doc.get("text"), doc.get("image")
        found = Export(
            model_id=model_id,
            folder=folder,
            dim=int(doc["dim"]),
            source=dict(doc["source"]),
            weights_digest=doc.get("weights_digest"),
            text=TextTower(**text) if text else None,
            image=ImageTower(**image) if image else None,
            min_cosine=dict(doc.get("min_cosine") or {}),
            runtime=str(doc.get("runtime", "")),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    files = [t.file for t in (found.text, found.image) if t is not None]
    return found if all((folder / f).is_file() for f in files) else None


def refusal(cache_dir: Path, model_id: str) -> str | None:
    """Why this exporter refused the model before (not worth trying every run), or None."""
    doc = read_json_object(folder_for(cache_dir, model_id) / REFUSED)
    ok = doc.get("format") == FORMAT and doc.get("model_id") == model_id
    return str(doc.get("reason")) if ok else None


def belongs(export: Export, spec: ModelSpec, *, models_dir: Path, cache_dir: Path) -> bool:
    """Whether `spec` still loads the very model `export` was made from, told without
    torch: the spec's model id (from files and config, or the hub cache), then the digest
    of the weights file it names."""
    model_id = quick_model_id(spec, models_dir, cache_dir)
    if model_id is None and spec.name.startswith("hf-hub:"):
        try:  # the hub's local cache only; no torch
            model_id = resolve(
                spec.model, spec.pretrained, models_dir=models_dir, cache_dir=cache_dir
            ).model_id
        except ModelError:
            return False
    if model_id != export.model_id:
        return False
    file = weights_file(spec, models_dir)
    if export.weights_digest is None:
        return file is None
    try:
        return file is not None and weights_digest(file, cache_dir) == export.weights_digest
    except OSError:
        return False


def publish(staging: Path, cache_dir: Path, model_id: str) -> Path:
    """Move a finished staging folder into place; an export already there (another
    process made it first) is kept. What is left of `staging` is the caller's to remove."""
    final = folder_for(cache_dir, model_id)
    if find(cache_dir, model_id) is not None:
        return final
    if final.exists():  # a refusal marker or the leftovers of an older format
        old = final.with_name(f".old-{final.name}-{os.getpid()}")
        final.rename(old)
        shutil.rmtree(old, ignore_errors=True)
    try:
        staging.rename(final)
    except OSError:
        if find(cache_dir, model_id) is None:
            raise
    return final


def staging_folder(cache_dir: Path, model_id: str) -> Path:
    folder = folder_for(cache_dir, model_id)
    staging = folder.with_name(f".tmp-{folder.name}-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging


def write_manifest(export: Export) -> None:
    (export.folder / MANIFEST).write_text(json.dumps(export.manifest(), indent=1))


def record_refusal(cache_dir: Path, model_id: str, reason: str) -> None:
    folder = folder_for(cache_dir, model_id)
    with contextlib.suppress(OSError):  # a read-only library simply tries again next time
        folder.mkdir(parents=True, exist_ok=True)
        doc = {"format": FORMAT, "model_id": model_id, "reason": reason}
        (folder / REFUSED).write_text(json.dumps(doc, indent=1))
