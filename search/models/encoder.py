"""The Encoder seam: texts and images in, L2-normalised float32 arrays out.

`prepare` (PIL → uint8 pixels at model resolution) runs in decoding threads; the model only
ever sees whole uint8 batches, which it normalises on its own device.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Sequence
from typing import Protocol

import numpy as np
from PIL import Image

from search.errors import ModelError
from search.models.spec import ModelSource, register_bundled_configs
from search.settings import PRECISIONS

_PIL_RESAMPLE = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
}


class Encoder(Protocol):
    model_id: str
    dim: int
    engine: str  # what runs the model: "torch", or "onnx" (its export)
    device: str  # where it runs: "cpu", "cuda", "cuda:1", ...
    # What `prepare` does: open_clip's eval transform, to image_size × image_size pixels.
    image_size: int
    resize_mode: str  # "shortest" (resize, then centre-crop), "longest" (pad), "squash"
    resample: str  # "bicubic", "bilinear" or "nearest"

    def prepare(self, image: Image.Image) -> np.ndarray: ...
    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray: ...
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray: ...
    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray: ...


def prepare_pixels(
    image: Image.Image, size: int, resize_mode: str = "shortest", resample: str = "bicubic"
) -> np.ndarray:
    """Resize + centre-crop like open_clip's eval transform, but to uint8 HxWx3.

    Matches torchvision's Resize(size) + CenterCrop(size) on a PIL image pixel for pixel.
    """
    method = _PIL_RESAMPLE.get(resample, Image.Resampling.BICUBIC)
    w, h = image.size
    if resize_mode == "squash":
        return np.asarray(image.resize((size, size), method), dtype=np.uint8)
    if resize_mode == "longest":
        scale = size / max(w, h)
        new = (max(1, round(w * scale)), max(1, round(h * scale)))
        canvas = Image.new("RGB", (size, size))
        canvas.paste(image.resize(new, method), ((size - new[0]) // 2, (size - new[1]) // 2))
        return np.asarray(canvas, dtype=np.uint8)
    if w <= h:
        new_w, new_h = size, int(size * h / w)
    else:
        new_w, new_h = int(size * w / h), size
    if (new_w, new_h) != (w, h):
        image = image.resize((new_w, new_h), method)
    left = int(round((new_w - size) / 2.0))
    top = int(round((new_h - size) / 2.0))
    return np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.uint8)


def cpu_has_native_bf16() -> bool:
    import torch

    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def pick_precision(precision: str, device: str) -> str:
    """auto: bf16 on CPUs with native bf16 (AVX512-BF16, AMX), where it doubles ViT
    throughput at cosine ≥ 0.9999 to fp32; autocast on CUDA; fp32 elsewhere."""
    if precision not in PRECISIONS:
        raise ModelError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision != "auto":
        return precision
    if device.startswith("cuda"):
        return "autocast"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def pick_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError("--device cuda was asked for, but no CUDA device is available")
    return device


class ClipEncoder:
    engine = "torch"

    def __init__(
        self, model, tokenizer, source: ModelSource, device: str, precision: str = "fp32"
    ) -> None:
        import open_clip
        import torch

        # Inference in bf16/fp16 casts the weights once; "autocast" (CUDA) keeps fp32
        # weights and lets autocast pick per op. Training passes its fp32 model as is.
        self.precision = precision
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
        if self.dtype != torch.float32:
            model = model.to(self.dtype)
        self.model = model
        self.tokenizer = tokenizer
        self.source = source
        self.model_id = source.model_id
        self.device = device
        cfg = {**open_clip.get_model_preprocess_cfg(model), **source.preprocess}
        size = cfg.get("size", 224)
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        self.resize_mode = cfg.get("resize_mode", "shortest")
        self.resample = cfg.get("interpolation", "bicubic")
        shape = (1, 3, 1, 1)
        self._mean = torch.tensor(cfg.get("mean", open_clip.OPENAI_DATASET_MEAN)).view(shape)
        self._std = torch.tensor(cfg.get("std", open_clip.OPENAI_DATASET_STD)).view(shape)
        self._mean, self._std = self._mean.to(device), self._std.to(device)
        self.dim = int(self.encode_texts(["a"]).shape[1])

    def autocast(self):
        import torch

        if self.device.startswith("cuda") and self.precision == "autocast":
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            return torch.autocast("cuda", dtype=dtype)
        return contextlib.nullcontext()

    def prepare(self, image: Image.Image) -> np.ndarray:
        return prepare_pixels(image, self.image_size, self.resize_mode, self.resample)

    def to_tensor(self, pixels):
        """uint8 (B, H, W, 3), numpy or a tensor (already on the device when it was
        decoded there) → the model's normalised float input (B, 3, H, W)."""
        import torch

        if isinstance(pixels, np.ndarray):
            pixels = torch.from_numpy(np.ascontiguousarray(pixels))
        x = pixels.to(self.device, non_blocking=True)
        x = x.permute(0, 3, 1, 2).float().div_(255.0).sub_(self._mean).div_(self._std)
        return x.to(self.dtype)

    def encode_pixels(self, pixels) -> np.ndarray:
        """uint8 (B, H, W, 3), numpy or tensor → normalised float32 (B, D)."""
        import torch

        with torch.inference_mode(), self.autocast():
            out = self.model.encode_image(self.to_tensor(pixels))
        return unit_rows(out.float().cpu().numpy())

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        with torch.inference_mode(), self.autocast():
            tokens = self.tokenizer(list(texts)).to(self.device)
            out = self.model.encode_text(tokens)
        return unit_rows(out.float().cpu().numpy())

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self.encode_pixels(np.stack([self.prepare(im) for im in images]))


def unit_rows(vectors) -> np.ndarray:
    """float32 rows scaled to length 1 (what every Encoder returns)."""
    arr = np.asarray(vectors, dtype=np.float32)
    return arr / np.maximum(np.linalg.norm(arr, axis=1, keepdims=True), 1e-12)


def build_model(source: ModelSource, device: str = "cpu"):
    """(model, tokenizer) for a resolved source; weights load without unpickling code."""
    import open_clip
    import torch

    register_bundled_configs()
    pretrained = str(source.weights) if source.weights else None
    try:
        # open_clip logs a root-logger warning for deliberate random init; not news here.
        # One build at a time: _skip_init and the seeded RNG are process-wide while it runs
        # (the indexer loads its model in a thread, the web UI per request thread).
        with (
            _BUILD_LOCK,
            torch.random.fork_rng(devices=[]),
            _quiet_logging(),
            _skip_init() if source.seed is None else contextlib.nullcontext(),
        ):
            if source.seed is not None:
                torch.manual_seed(source.seed % (2**63))
            model = open_clip.create_model(
                source.name, pretrained=pretrained, device=device, weights_only=True
            )
        tokenizer = open_clip.get_tokenizer(source.name)
    except Exception as exc:  # open_clip raises RuntimeError/ValueError/pickle errors alike
        raise ModelError(f"cannot load model {source.model_id}: {exc}") from exc
    return model, tokenizer


_BUILD_LOCK = threading.Lock()

_INIT_FUNCTIONS = (
    "uniform_",
    "normal_",
    "trunc_normal_",
    "constant_",
    "ones_",
    "zeros_",
    "kaiming_uniform_",
    "kaiming_normal_",
    "xavier_uniform_",
    "xavier_normal_",
)


@contextlib.contextmanager
def _skip_init():
    """Random initialisation of a ViT-B costs over a second on a laptop CPU, and every
    value is overwritten when a checkpoint follows (open_clip loads it strictly, so a
    missing tensor is an error, never left uninitialised)."""
    import torch

    saved = {name: getattr(torch.nn.init, name) for name in _INIT_FUNCTIONS}
    for name in _INIT_FUNCTIONS:
        setattr(torch.nn.init, name, lambda tensor, *args, **kwargs: tensor)
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(torch.nn.init, name, fn)


@contextlib.contextmanager
def _quiet_logging():
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def load_encoder(source: ModelSource, device: str = "auto", precision: str = "auto") -> ClipEncoder:
    device = pick_device(device)
    precision = pick_precision(precision, device)
    model, tokenizer = build_model(source, device)
    model.eval()
    return ClipEncoder(model, tokenizer, source, device, precision)
