"""The image tower's export on OpenVINO in bf16, on CPUs that multiply bf16 in hardware.

ONNX Runtime runs the export in fp32 on x86 CPUs (it has no bf16 matrix kernels there);
OpenVINO runs the same ONNX file in bf16 on AMX / AVX512-BF16 at about a fifth of the CPU
time per image (ViT-B-32-256, 2 cores: ~22 ms against ~107 ms, bench/cli_bench.py), and
imports in 0.2 s where torch takes seconds. On such a CPU it is the fastest way to index
at any run size (search.models.onnx.choose). An optional extra: `imgsearch[openvino]`.

bf16 rounds the same model differently, so before its first use on a machine the compiled
tower is checked against the fp32 export (itself checked against torch when exported) on
the export's check images, and refused under check.MIN_COSINE; the verdict is kept beside
the export (``openvino.json``, one entry per OpenVINO version and CPU). Compiled graphs are
cached under ``cache/openvino/`` per version and CPU, so a later run reads them instead of
compiling again (0.5 s instead of 1.5 s here).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import logging
import threading
from pathlib import Path

import numpy as np

from search.diskfiles import atomic_write
from search.models.onnx.check import MIN_COSINE, check_pixels, worst_cosine
from search.models.onnx.store import Export
from search.models.spec import read_json_object

log = logging.getLogger(__name__)

VERDICTS = "openvino.json"


def installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


@functools.cache
def _core():
    import openvino

    return openvino.Core()


def native_bf16() -> bool:
    """OpenVINO lists BF16 among the CPU's capabilities only when it is native."""
    return "BF16" in _core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


@functools.cache
def machine_key() -> str:
    """What a compiled graph and a verdict depend on: OpenVINO's version and the CPU."""
    import openvino

    core = _core()
    caps = " ".join(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    text = f"{openvino.__version__}|{core.get_property('CPU', 'FULL_DEVICE_NAME')}|{caps}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class ImageSession:
    """A compiled image tower with ONNX Runtime's ``run`` signature (what OnnxEncoder
    calls). One infer request under a lock: OpenVINO already spreads each batch over
    every core."""

    def __init__(self, path: Path, cache_dir: Path) -> None:
        blobs = cache_dir / "openvino" / machine_key()
        blobs.mkdir(parents=True, exist_ok=True)
        config = {
            "INFERENCE_PRECISION_HINT": "bf16",
            "PERFORMANCE_HINT": "LATENCY",
            "CACHE_DIR": str(blobs),
        }
        self._request = _core().compile_model(str(path), "CPU", config).create_infer_request()
        self._lock = threading.Lock()

    def run(self, _outputs, feeds: dict) -> list[np.ndarray]:
        (pixels,) = feeds.values()
        with self._lock:
            out = self._request.infer({0: pixels})
            return [np.array(out[0], dtype=np.float32, copy=True)]


def usable(export: Export, cache_dir: Path) -> bool:
    """Whether this export's image tower may run on OpenVINO here: installed, bf16 in
    hardware, and its vectors agree with the fp32 export's (measured once)."""
    if export.image is None or not installed():
        return False
    try:
        if not native_bf16():
            return False
        known = read_json_object(export.folder / VERDICTS).get(machine_key())
        return bool(known["ok"]) if known else _measure(export, cache_dir)
    except Exception as exc:  # noqa: BLE001 - OpenVINO failing here only means "use ORT"
        log.warning("OpenVINO not used for %s: %s: %s", export.model_id, type(exc).__name__, exc)
        return False


def _measure(export: Export, cache_dir: Path) -> bool:
    from search.models.onnx.encoder import OnnxEncoder

    pixels = check_pixels(export.image.size)
    fp32 = OnnxEncoder(export, prepack=False).encode_pixels(pixels)
    bf16 = OnnxEncoder(export, openvino_cache=cache_dir).encode_pixels(pixels)
    worst = worst_cosine(bf16, fp32)
    ok = worst >= MIN_COSINE
    if not ok:
        log.warning(
            "OpenVINO bf16 refused for %s: cosine %.5f < %s", export.model_id, worst, MIN_COSINE
        )
    verdicts = {
        **read_json_object(export.folder / VERDICTS),
        machine_key(): {"ok": ok, "min_cosine": round(worst, 6)},
    }
    atomic_write(export.folder / VERDICTS, json.dumps(verdicts, indent=1).encode())
    return ok
