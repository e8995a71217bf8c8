"""Resolve a user's model spec (DESIGN.md "Models") into something open_clip can load.

Importing this module is cheap. quick_model_id, weights_file and preprocess_guess answer
from files alone, so a command that has nothing to embed never pays for loading a model;
resolve() imports open_clip (and with it torch) only for what needs its registry: an
architecture name, a config file, a pretrained tag.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlparse

from search.diskfiles import atomic_write, file_sha256
from search.errors import ModelError
from search.settings import DEFAULT_MODEL, DEFAULT_PRETRAINED

BUNDLED_CONFIGS = Path(__file__).resolve().parent / "configs"
NO_WEIGHTS = ("none", "random", "")
# What `train` writes into models/NAME/ besides the weights; also what a hub repo holds.
OPEN_CLIP_CONFIG = "open_clip_config.json"
SIDECAR = "imgsearch.json"
# The training-curves picture beside the sidecar (drawn by indexer.training.curves).
CURVES = "curves.png"
# The distinct captions a saved model was trained on, one a line: `describe` offers them.
CAPTIONS = "captions.txt"
# Its pairs' images embedded by the saved weights, with their captions: the relevance cutoff
# checks on them whether the model knows a query (search.query.relevance.Checked).
PAIRS = "pairs.npz"
WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


@dataclass(frozen=True)
class ModelSpec:
    """A model as a person names it (DESIGN.md "Models"): `model`, an open_clip
    architecture, an hf-hub: id, a saved model's name or folder, or a config .json
    (None: the default); `pretrained`, a tag, a weights file or "none" (None: the model's
    own). Stored as JSON in the catalog and the library's settings."""

    model: str | None = None
    pretrained: str | None = None

    @property
    def name(self) -> str:
        """The model asked for, or the default one."""
        return self.model or DEFAULT_MODEL

    def as_dict(self) -> dict[str, str | None]:
        return {"model": self.model, "pretrained": self.pretrained}

    @classmethod
    def from_dict(cls, data: Mapping) -> ModelSpec:
        return cls(data.get("model"), data.get("pretrained"))

    def dumps(self) -> str:
        """The form the catalog and the library's settings store (keys sorted, so equal
        specs store equal text)."""
        return json.dumps(self.as_dict(), sort_keys=True)

    @classmethod
    def loads(cls, text: str) -> ModelSpec:
        return cls.from_dict(json.loads(text))


@dataclass(frozen=True)
class ModelSource:
    """Everything needed to build a model, plus its identity."""

    name: str  # open_clip model name: an architecture, or "local-dir:PATH"
    weights: Path | None  # full checkpoint to load (None: local-dir or random init)
    model_id: str  # architecture + weights fingerprint; vectors are stored under it
    spec: ModelSpec  # resolves to this source again
    preprocess: dict = field(default_factory=dict)  # overrides from the pretrained tag
    seed: int | None = None  # random init is seeded so every load gives the same model


def file_digest(path: Path, length: int = 12) -> str:
    return file_sha256(path)[:length]


def read_json_object(path: Path) -> dict:
    """A JSON file's object; {} when the file is missing, unreadable or holds no object."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


DIGEST_CACHE = "weights-digests.json"


def weights_digest(path: Path, cache_dir: Path) -> str:
    """file_digest, remembered per file version (path, size, times, inode): hashing a
    600 MB checkpoint costs over half a second of every command that loads the model."""
    st = path.stat()
    # ctime too: `cp -p` or `touch -r` over the file can keep its size and mtime.
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}|{st.st_ino}"
    cache = cache_dir / DIGEST_CACHE
    known = read_json_object(cache)
    if isinstance(digest := known.get(key), str):
        return digest
    digest = file_digest(path)
    # One entry per file: an older version of it will not come back.
    prefix = key.split("|", 1)[0] + "|"
    known = {k: v for k, v in known.items() if not k.startswith(prefix)} | {key: digest}
    with contextlib.suppress(OSError):  # a read-only library still works, hashing each time
        atomic_write(cache, json.dumps(known, indent=1).encode())
    return digest


def resolve(
    model: str | None, pretrained: str | None, *, models_dir: Path, cache_dir: Path
) -> ModelSource:
    model = model or DEFAULT_MODEL
    if model == DEFAULT_MODEL and pretrained is None:
        pretrained = DEFAULT_PRETRAINED
    spec = ModelSpec(model, pretrained)

    if model.startswith("hf-hub:"):
        return _from_hub(model[len("hf-hub:") :], spec, cache_dir)
    if (folder := _model_dir(model, models_dir)) is not None:
        return _from_dir(folder[0], ModelSpec(folder[1]), cache_dir)
    path = Path(model).expanduser()
    if path.suffix == ".json":
        if not path.is_file():
            raise ModelError(f"model config {path} does not exist")
        return _from_config_file(path.resolve(), pretrained, spec, cache_dir)
    return _from_architecture(model, pretrained, spec, cache_dir)


def _model_dir(model: str, models_dir: Path) -> tuple[Path, str] | None:
    """The saved-model folder `model` names — a name under models/, or a directory — and
    the name a spec keeps for it; None when it names neither."""
    saved = models_dir / model
    if "/" not in model and (saved / OPEN_CLIP_CONFIG).is_file():
        return saved, model
    path = Path(model).expanduser()
    return (path.resolve(), str(path.resolve())) if path.is_dir() else None


def quick_model_id(spec: ModelSpec, models_dir: Path, cache_dir: Path) -> str | None:
    """The model id `spec` resolves to, where that can be told without importing open_clip
    (and torch): a saved model folder, an architecture or config file with a weights file,
    a pretrained tag or random init; None for the rest (hub ids, a default tag). The
    architecture name is not checked, so callers trust the answer only when the catalog
    (or the model's ONNX export) already holds that model for the same spec."""
    model, pretrained = spec.name, spec.pretrained
    if model == DEFAULT_MODEL and pretrained is None:
        pretrained = DEFAULT_PRETRAINED
    if model.startswith("hf-hub:"):
        return None
    try:
        if (folder := _model_dir(model, models_dir)) is not None:
            return _from_dir(folder[0], spec, cache_dir).model_id
        arch, cfg = model, None
        if model.endswith(".json"):
            cfg = _read_config(Path(model).expanduser())
            if cfg is None:
                return None
            arch = f"custom-{_config_digest(cfg)}"
        elif pretrained is None:
            return None  # the first pretrained tag comes from open_clip's list
        if pretrained is None or pretrained.lower() in NO_WEIGHTS:
            cfg = _arch_config(arch) if cfg is None else cfg
            return None if cfg is None else _random_init(arch, cfg, spec).model_id
        file = Path(pretrained).expanduser()
        if file.is_file():
            return _from_weights_file(arch, file, spec, cache_dir).model_id
        return None if cfg is not None else f"{model}/{pretrained}"
    except (ModelError, OSError):
        return None


def weights_file(spec: ModelSpec, models_dir: Path) -> Path | None:
    """The weights file a spec loads, when it names one on disk (a saved model's checkpoint
    or --pretrained FILE); None for tags, hub ids and random init. Nothing is imported."""
    model, pretrained = spec.name, spec.pretrained
    if model.startswith("hf-hub:"):
        return None
    if (folder := _model_dir(model, models_dir)) is not None:
        return checkpoint_in_dir(folder[0])
    if pretrained and pretrained.lower() not in NO_WEIGHTS:
        file = Path(pretrained).expanduser()
        return file.resolve() if file.is_file() else None
    return None


def check_weights(path: Path) -> None:
    """A safetensors file cut short (a copy that stopped, a full disk) is refused from its
    header, without reading a tensor: `use` says so before the library switches to it."""
    if path.suffix != ".safetensors":
        return
    from safetensors import safe_open

    try:
        with safe_open(str(path), "np"):
            pass
    except Exception as exc:  # noqa: BLE001 - safetensors' own error type
        raise ModelError(
            f"{path}: the weights file is damaged or incomplete ({exc}); copy it again"
        ) from exc


def _config_digest(cfg: dict) -> str:
    """The fingerprint of an architecture's config (random-init ids, custom names)."""
    return hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:12]


def _read_config(path: Path) -> dict | None:
    """An open_clip model config as open_clip registers it (its model_cfg part)."""
    try:
        cfg = json.loads(path.read_text())
        cfg = cfg.get("model_cfg", cfg)
        return cfg if all(k in cfg for k in ("embed_dim", "vision_cfg", "text_cfg")) else None
    except (OSError, ValueError, AttributeError, TypeError):
        return None


def _arch_config(arch: str) -> dict | None:
    """open_clip.get_model_config(arch) without importing open_clip: its registry is the
    JSON files of its model_configs folder, then ours (registered later, so they win)."""
    for folder in [BUNDLED_CONFIGS, *_open_clip_config_dirs()]:
        file = folder / f"{arch}.json"
        if file.is_file():
            return _read_config(file)
    return None


def _open_clip_config_dirs() -> list[Path]:
    found = importlib.util.find_spec("open_clip")
    locations = (found.submodule_search_locations or ()) if found else ()
    return [Path(p) / "model_configs" for p in locations]


@dataclass(frozen=True)
class PrepareGuess:
    """The image input a model probably wants (see preprocess_guess)."""

    size: int
    resize_mode: str = "shortest"  # open_clip's defaults
    resample: str = "bicubic"


def preprocess_guess(spec: ModelSpec, models_dir: Path) -> PrepareGuess | None:
    """The input size, resize mode and resampling of the model `spec` names, read from its
    config file without importing open_clip (and torch, seconds): so decoding can start
    while the model loads. Only a guess — a pretrained tag may override the resampling, and
    open_clip's lookup has more cases — so callers check it against the loaded model."""
    model = spec.name
    if model.startswith("hf-hub:"):
        return None
    folder = _model_dir(model, models_dir)
    candidates = [folder[0] / OPEN_CLIP_CONFIG] if folder else []
    candidates += [Path(model).expanduser(), BUNDLED_CONFIGS / f"{model}.json"]
    candidates += [configs / f"{model}.json" for configs in _open_clip_config_dirs()]
    for file in candidates:
        if file.suffix != ".json" or not file.is_file():
            continue
        try:
            cfg = json.loads(file.read_text())
            size = cfg.get("model_cfg", cfg)["vision_cfg"]["image_size"]
            pre = cfg.get("preprocess_cfg", {})
            size = int(size[0] if isinstance(size, list) else size)
            return PrepareGuess(
                size, pre.get("resize_mode", "shortest"), pre.get("interpolation", "bicubic")
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError):
            return None
    return None


def register_bundled_configs() -> None:
    import open_clip

    if "imgsearch-tiny" not in open_clip.list_models():
        open_clip.add_model_config(BUNDLED_CONFIGS)


def _from_architecture(
    arch: str, pretrained: str | None, spec: ModelSpec, cache_dir: Path
) -> ModelSource:
    import open_clip

    register_bundled_configs()
    if arch not in open_clip.list_models():
        raise ModelError(
            f"unknown model {arch!r}: not an open_clip architecture, a saved model, a "
            "directory, an hf-hub: id or a config .json (see `imgsearch models`)"
        )
    if pretrained is None:
        tags = open_clip.list_pretrained_tags_by_model(arch)
        pretrained = tags[0] if tags else "none"
        spec = replace(spec, pretrained=pretrained)
    if pretrained.lower() in NO_WEIGHTS:
        return _random_init(arch, open_clip.get_model_config(arch), spec)
    file = Path(pretrained).expanduser()
    if file.is_file():
        return _from_weights_file(arch, file, spec, cache_dir)
    pcfg = open_clip.get_pretrained_cfg(arch, pretrained)
    if not pcfg:
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(arch)) or "none"
        raise ModelError(
            f"--pretrained {pretrained!r} is neither a file nor a known tag for {arch} "
            f"(known: {tags}; or 'none' for random init)"
        )
    weights = _fetch_pretrained(arch, pretrained, pcfg, cache_dir)
    keep = ("mean", "std", "interpolation", "resize_mode")
    return ModelSource(
        arch, weights, f"{arch}/{pretrained}", spec, {k: pcfg[k] for k in keep if k in pcfg}
    )


def _from_config_file(
    path: Path, pretrained: str | None, spec: ModelSpec, cache_dir: Path
) -> ModelSource:
    import open_clip

    try:
        cfg = json.loads(path.read_text())
        cfg = cfg.get("model_cfg", cfg)
        _ = cfg["vision_cfg"], cfg["text_cfg"], cfg["embed_dim"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelError(f"{path} is not an open_clip model config: {exc}") from exc
    digest = _config_digest(cfg)
    # Registered under a content-derived name so it can never shadow a built-in architecture.
    arch = f"custom-{digest}"
    if arch not in open_clip.list_models():
        copy = cache_dir / "configs" / f"{arch}.json"
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text(json.dumps(cfg))
        open_clip.add_model_config(copy)
    spec = ModelSpec(str(path), pretrained)
    if pretrained is None or pretrained.lower() in NO_WEIGHTS:
        return _random_init(arch, cfg, spec)
    file = Path(pretrained).expanduser()
    if not file.is_file():
        raise ModelError(f"--pretrained {pretrained}: no such weights file")
    return _from_weights_file(arch, file, spec, cache_dir)


def _random_init(arch: str, cfg: dict, spec: ModelSpec) -> ModelSource:
    """`arch` with no weights, seeded from its config (`cfg`)."""
    digest = _config_digest(cfg)
    return ModelSource(arch, None, f"{arch}/random:{digest}", spec, seed=int(digest, 16))


def _from_weights_file(arch: str, file: Path, spec: ModelSpec, cache_dir: Path) -> ModelSource:
    digest = weights_digest(file, cache_dir)
    return ModelSource(arch, file.resolve(), f"{arch}/sha256:{digest}", spec)


# open_clip's local-dir loader (factory._find_checkpoint_in_dir, open_clip 3.x) loads the
# first of these present, else a .safetensors file, else any checkpoint, by name.
_CHECKPOINT_ORDER = (
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.safetensors",
    "open_clip_pytorch_model.bin",
    "open_clip_pytorch_model.pth",
    "model.safetensors",
    "pytorch_model.bin",
    "pytorch_model.pth",
    "model.pth",
)


def checkpoint_in_dir(path: Path) -> Path | None:
    """The checkpoint open_clip will load from a model folder: the file whose fingerprint
    names the model must be the one whose weights embed the images."""
    found = sorted(p for ext in ("safetensors", "bin", "pth") for p in path.glob(f"*.{ext}"))
    names = {p.name: p for p in found}
    for name in _CHECKPOINT_ORDER:
        if name in names:
            return names[name]
    found.sort(key=lambda p: p.suffix == ".safetensors", reverse=True)
    return found[0] if found else None


def _from_dir(path: Path, spec: ModelSpec, cache_dir: Path) -> ModelSource:
    if not (path / OPEN_CLIP_CONFIG).is_file():
        raise ModelError(f"{path} is not a saved model (no {OPEN_CLIP_CONFIG})")
    weights = checkpoint_in_dir(path)
    if weights is None:
        raise ModelError(f"{path} has no weights (a .safetensors, .bin or .pth file)")
    model_id = None
    if (path / SIDECAR).is_file():
        try:
            sidecar = json.loads((path / SIDECAR).read_text())
            model_id = sidecar.get("model_id")
        except (OSError, ValueError, AttributeError) as exc:
            raise ModelError(f"{path / SIDECAR} is not valid: {exc}") from exc
    model_id = model_id or f"{path.name}/sha256:{weights_digest(weights, cache_dir)}"
    return ModelSource(f"local-dir:{path}", None, model_id, spec)


def _from_hub(repo: str, spec: ModelSpec, cache_dir: Path) -> ModelSource:
    from huggingface_hub import hf_hub_download

    def get(filename: str, local_only: bool) -> Path:
        return Path(
            hf_hub_download(repo, filename, cache_dir=cache_dir, local_files_only=local_only)
        )

    files = []
    for local_only in (True, False):
        with contextlib.suppress(Exception):  # not cached; go online below
            config = get(OPEN_CLIP_CONFIG, local_only)
            for name in WEIGHT_FILES:
                with contextlib.suppress(Exception):  # try the next weights file name
                    files = [config, get(name, local_only)]
                    break
        if files:
            break
        _require_network("huggingface.co", f"hf-hub:{repo}", cache_dir)
    if not files:
        raise ModelError(f"hf-hub:{repo} has no open_clip config and weights")
    snapshot = files[0].parent  # the snapshot folder is named by the repo's commit
    return ModelSource(f"local-dir:{snapshot}", None, f"hf-hub:{repo}@{snapshot.name[:12]}", spec)


def _fetch_pretrained(arch: str, tag: str, pcfg: dict, cache_dir: Path) -> Path:
    """The tag's weights file, from the cache or downloaded; fails in seconds offline."""
    import open_clip
    from huggingface_hub import hf_hub_download

    hub = pcfg.get("hf_hub", "")
    if hub:
        # open_clip writes "org/repo/file" or "org/repo/" (the repo's default file name).
        repo, filename = os.path.split(hub)
        names = [filename] if filename else list(WEIGHT_FILES)
        for name in [n[:-4] + ".safetensors" for n in names if n.endswith(".bin")] + names:
            with contextlib.suppress(Exception):  # not cached under this name
                return Path(hf_hub_download(repo, name, cache_dir=cache_dir, local_files_only=True))
        _require_network("huggingface.co", f"{arch} ({tag})", cache_dir)
    else:
        url = pcfg.get("url", "")
        cached = cache_dir / os.path.basename(url)
        if cached.is_file():
            return cached
        _require_network(urlparse(url).hostname or "", f"{arch} ({tag})", cache_dir)
    try:
        return Path(open_clip.download_pretrained(pcfg, cache_dir=str(cache_dir)))
    except Exception as exc:
        raise ModelError(f"downloading weights for {arch} ({tag}) failed: {exc}") from exc


def _require_network(host: str, what: str, cache_dir: Path) -> None:
    from huggingface_hub import constants

    reason = "offline mode (HF_HUB_OFFLINE)" if constants.HF_HUB_OFFLINE else None
    if reason is None:
        try:
            socket.create_connection((host, 443), timeout=3).close()
        except OSError as exc:
            reason = f"cannot reach {host}: {exc.strerror or exc}"
    if reason:
        raise ModelError(
            f"weights for {what} are not cached in {cache_dir} and cannot be downloaded "
            f"({reason}); pass a local weights file with --pretrained FILE"
        )
