"""The saved model folder: open_clip config, safetensors weights, the imgsearch.json
sidecar and the training curves, built beside the models and swapped in whole, so an
interruption or a full disk never leaves a half-written model in use."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np

from search.models.spec import (
    CAPTIONS,
    CURVES,
    OPEN_CLIP_CONFIG,
    PAIRS,
    SIDECAR,
    WEIGHT_FILES,
    ModelSource,
    file_digest,
)


def model_config(source: ModelSource) -> dict:
    import open_clip

    if source.name.startswith("local-dir:"):
        path = Path(source.name[len("local-dir:") :]) / OPEN_CLIP_CONFIG
        return json.loads(path.read_text())["model_cfg"]
    return open_clip.get_model_config(source.name)


def save_tensors(tensors: dict, path: Path) -> None:
    """A state dict as a safetensors file; a full disk is an OSError naming the file."""
    from safetensors.torch import save_file

    # Not diskfiles.replacing: its temporary files are private (0600), and a saved model's
    # weights keep the permissions any written file gets.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp)
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        # safetensors' writer names the OS error only in its text ("(os error 28)"):
        # an OSError with the file's name, as every other write here raises.
        found = re.search(r"\(os error (\d+)\)", str(exc))
        if found is None:
            raise
        number = int(found.group(1))
        raise OSError(number, os.strerror(number), str(tmp)) from exc
    tmp.replace(path)


def save_model(
    model, models_dir: Path, name: str, meta: dict, preprocess: dict, captions=(), pairs=None
) -> Path:
    """models_dir/name with config, weights, sidecar, curves and the distinct training
    `captions`; and `pairs` = (image vectors by these weights, each caption, its image's
    row) where given; swapped in whole."""
    from indexer.training.curves import draw_curves

    final = models_dir / name
    tmp = models_dir / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        save_tensors(model.state_dict(), tmp / WEIGHT_FILES[0])
        config = {"model_cfg": meta["architecture"], "preprocess_cfg": dict(preprocess)}
        (tmp / OPEN_CLIP_CONFIG).write_text(json.dumps(config, indent=2))
        meta = {"model_id": f"{name}/sha256:{file_digest(tmp / WEIGHT_FILES[0])}", **meta}
        draw_curves(meta["metrics"], tmp / CURVES)
        # One caption a line: a caption's own line breaks become spaces.
        lines = dict.fromkeys(" ".join(c.split()) for c in captions)
        (tmp / CAPTIONS).write_text("".join(f"{c}\n" for c in lines if c), encoding="utf-8")
        if pairs is not None:
            vectors, texts, image_of = pairs
            with open(tmp / PAIRS, "wb") as f:
                np.savez(
                    f,
                    vectors=np.asarray(vectors, np.float16),  # a ranking's worth of precision
                    captions=np.array([" ".join(c.split()) for c in texts]),
                    image_of=np.asarray(image_of, np.int32),
                )
        (tmp / SIDECAR).write_text(json.dumps(meta, indent=2, default=str))
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and exc.filename is None:  # say where it failed
            raise OSError(exc.errno, exc.strerror, str(final)) from exc
        raise
    old = models_dir / f".{name}.old"
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        final.replace(old)
    tmp.replace(final)
    shutil.rmtree(old, ignore_errors=True)
    return final
