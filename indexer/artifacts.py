"""What training leaves on disk: per-epoch checkpoints (so a run can resume) and the
saved model folder (open_clip config, safetensors weights, the imgsearch.json sidecar),
each written so that an interruption never leaves a half-written file in use."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from search.diskfiles import atomic_write
from search.modelspec import OPEN_CLIP_CONFIG, SIDECAR, WEIGHT_FILES, ModelSource, file_digest


def model_config(source: ModelSource) -> dict:
    import open_clip

    if source.name.startswith("local-dir:"):
        path = Path(source.name[len("local-dir:") :]) / OPEN_CLIP_CONFIG
        return json.loads(path.read_text())["model_cfg"]
    return open_clip.get_model_config(source.name)


def save_tensors(model, path: Path) -> None:
    from safetensors.torch import save_file

    # Not diskfiles.replacing: its temporary files are private (0600), and a saved model's
    # weights keep the permissions any written file gets.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, tmp)
    tmp.replace(path)


def read_state(ckpt_dir: Path, fingerprint: dict) -> dict | None:
    try:
        state = json.loads((ckpt_dir / "state.json").read_text())
    except (OSError, ValueError):
        return None
    same = all(state.get(k) == v for k, v in json.loads(json.dumps(fingerprint)).items())
    return state if same else None


def write_state(ckpt_dir: Path, state: dict) -> None:
    atomic_write(ckpt_dir / "state.json", json.dumps(state, indent=1, default=str).encode())


def save_model(model, source, models_dir: Path, name: str, meta: dict, preprocess: dict) -> Path:
    """models_dir/name with config, safetensors weights and the sidecar; swapped in whole."""
    final = models_dir / name
    tmp = models_dir / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_tensors(model, tmp / WEIGHT_FILES[0])
    config = {"model_cfg": meta["architecture"], "preprocess_cfg": dict(preprocess)}
    (tmp / OPEN_CLIP_CONFIG).write_text(json.dumps(config, indent=2))
    meta = {"model_id": f"{name}/sha256:{file_digest(tmp / WEIGHT_FILES[0])}", **meta}
    (tmp / SIDECAR).write_text(json.dumps(meta, indent=2, default=str))
    old = models_dir / f".{name}.old"
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        final.replace(old)
    tmp.replace(final)
    shutil.rmtree(old, ignore_errors=True)
    return final
