"""The Encoder seam over a model's ONNX export: ONNX Runtime on the CPU, no torch.

Each tower's session is opened on first use (or by ``load``), once: a query needs only
the text tower, an index run only the image tower. A tower the export lacks (refused at
export time) is delegated to ``fallback``, the same model loaded with torch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from search.models.encoder import prepare_pixels, unit_rows
from search.models.onnx.store import Export, ImageTower, TextTower
from search.models.tokenizer import ClipTokenizer


def open_session(path: Path, *, threads: int = 0, layouts: bool = True, prepack: bool = True):
    """A CPU session for an export's file. The file is already optimised (portable
    fusions, at export time); `layouts` adds the hardware-specific ones (convolutions:
    the image tower). Idle pool threads sleep rather than spin: decoding threads need
    those cores. `prepack` lays the weights out for the matrix kernels once, as the
    session opens: a third of a second for a text tower, which a process that answers
    one query never earns back (each run then does it for the weights it reads)."""
    import onnxruntime as ort

    level = ort.GraphOptimizationLevel
    options = ort.SessionOptions()
    options.graph_optimization_level = level.ORT_ENABLE_ALL if layouts else level.ORT_DISABLE_ALL
    options.log_severity_level = 3  # warnings about the saved graph are not the user's
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if not prepack:
        options.add_session_config_entry("session.disable_prepacking", "1")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


# A query is one to a few short texts: one thread runs it as fast as two (measured: 28 ms
# vs 58 ms for 7 tokens on 2 busy cores), and leaves the other core to the web server's
# other requests.
TEXT_THREADS = 1


class OnnxEncoder:
    engine = "onnx"
    device = "cpu"
    precision = "fp32"

    def __init__(
        self, export: Export, *, prepack: bool = True, openvino_cache: Path | None = None
    ) -> None:
        """`prepack`: lay the weights out once as the sessions open (see open_session),
        for a process that runs the model many times; a `search` that answers one query
        or an index run of a few dozen images is faster without. `openvino_cache`: run
        the image tower on OpenVINO in bf16 (search.models.onnx.openvino; the caller has
        checked that it may), its compiled graphs cached there."""
        self.export = export
        self._prepack = prepack
        self._openvino_cache = openvino_cache
        if openvino_cache is not None:
            self.precision = "bf16"
        self.model_id = export.model_id
        self.dim = export.dim
        image = export.image
        self.image_size = image.size if image else 0
        self.resize_mode = image.resize_mode if image else "shortest"
        self.resample = image.resample if image else "bicubic"
        self._lock = threading.Lock()
        self._text = self._image = self._tokenizer = None
        self.fallback: Callable[[], object] | None = None
        self._torch = None

    @classmethod
    def for_towers(
        cls, folder: Path, text: TextTower | None, image: ImageTower | None, dim: int
    ) -> OnnxEncoder:
        """An encoder over towers not yet published (the export's own check)."""
        return cls(Export("", folder, dim, {}, None, text, image, {}, ""))

    @property
    def has_text(self) -> bool:
        return self.export.text is not None

    @property
    def has_image(self) -> bool:
        return self.export.image is not None

    def load(self, *, text: bool = True, image: bool = False) -> OnnxEncoder:
        """Open the sessions now (a server warming up) rather than on first use; the
        text tower's tokenizer is made ready too (its cleaner imported, its pattern
        compiled)."""
        if text and self.has_text:
            self._text_session()
            self._tokenizer("a")
        if image and self.has_image:
            self._image_session()
        return self

    def _text_session(self):
        with self._lock:
            if self._text is None:
                tower = self.export.text
                self._tokenizer = ClipTokenizer(context_length=tower.context_length)
                self._text = open_session(
                    self.export.folder / tower.file,
                    threads=TEXT_THREADS,
                    layouts=False,
                    prepack=self._prepack,
                )
            return self._text

    def _image_session(self):
        with self._lock:
            if self._image is None:
                tower = self.export.image
                path = self.export.folder / tower.file
                if self._openvino_cache is not None:
                    from search.models.onnx.openvino import ImageSession

                    self._image = ImageSession(path, self._openvino_cache)
                else:
                    self._image = open_session(path, prepack=self._prepack)
            return self._image

    def _delegate(self):
        if self.fallback is None:
            raise RuntimeError(f"the ONNX export of {self.model_id} lacks this tower")
        with self._lock:
            if self._torch is None:
                self._torch = self.fallback()
            return self._torch

    def prepare(self, image: Image.Image) -> np.ndarray:
        if not self.has_image:
            return self._delegate().prepare(image)
        return prepare_pixels(image, self.image_size, self.resize_mode, self.resample)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        if not self.has_text:
            return self._delegate().encode_texts(texts)
        session = self._text_session()
        tokens = self._tokenizer(list(texts))
        if self.export.text.trim:
            # Causal attention: nothing after the last end token reaches an end token.
            tokens = tokens[:, : int(tokens.argmax(axis=1).max()) + 1]
        return unit_rows(session.run(None, {"tokens": tokens})[0])

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 (B, H, W, 3) → normalised float32 (B, D)."""
        if not self.has_image:
            return self._delegate().encode_pixels(pixels)
        session = self._image_session()
        pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
        return unit_rows(session.run(None, {"pixels": pixels})[0])

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self.encode_pixels(np.stack([self.prepare(im) for im in images]))
