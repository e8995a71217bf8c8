"""Which runs use a model's ONNX export, and opening the query model early.

An export is used when the settings allow it (engine auto or onnx, on the CPU), it holds
the tower the run needs, and it still belongs to the model (store.belongs). A cold
`search` opens the serving model's text tower in a thread from its first moment
(``Preload``): ONNX Runtime reads the weights without holding the GIL while the main
thread opens the catalog and the index.
"""

from __future__ import annotations

import threading
from pathlib import Path

from search.models.onnx import store
from search.models.onnx.store import Export
from search.models.spec import ModelSpec
from search.settings import Settings

# Without OpenVINO, an index run embedding at most this many images uses the export on
# ONNX Runtime; a larger one uses torch. On 2 cores (ViT-B-32-256, 12 MP photos,
# bench/cli_bench.py) a whole `index` costs about 0.35 s + 76 ms per image on ONNX Runtime
# (fp32) and 3.4 s + 29 ms per image on torch (bf16, AMX): torch's start-up pays for
# itself from ~64 images (~46 when the cores are shared with other work). With OpenVINO
# in bf16 the export is faster than torch at every size (search.models.onnx.openvino).
SMALL_JOB = 50


def export_allowed(settings: Settings) -> bool:
    return settings.engine != "torch" and not settings.device.startswith("cuda")


def openvino_cache(settings: Settings, export: Export) -> Path | None:
    """Where the image tower's OpenVINO graphs are cached when this run may use it
    (engine auto or openvino, precision auto or bf16, and openvino.usable); else None."""
    if settings.engine not in ("auto", "openvino") or settings.precision not in ("auto", "bf16"):
        return None
    from search.models.onnx import openvino

    return settings.cache_dir if openvino.usable(export, settings.cache_dir) else None


def usable_export(
    settings: Settings,
    model_id: str,
    spec: ModelSpec,
    *,
    text: bool = False,
    image: bool = False,
) -> Export | None:
    """The export to run `model_id` with, or None (then torch)."""
    if not export_allowed(settings):
        return None
    found = store.find(settings.cache_dir, model_id)
    if found is None or (text and found.text is None) or (image and found.image is None):
        return None
    ok = store.belongs(found, spec, models_dir=settings.models_dir, cache_dir=settings.cache_dir)
    return found if ok else None


def index_engine(settings: Settings, jobs: int) -> str:
    """The engine ("onnx" or "torch") for an index run of about `jobs` images, given a
    usable export, before asking OpenVINO (indexer.sync.engines does, for a larger run)."""
    forced = settings.engine in ("onnx", "openvino")
    return "onnx" if forced or jobs <= SMALL_JOB else "torch"


class Preload:
    """The serving model's ONNX encoder, opened in a thread; ``take`` waits for it."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._result = None
        self._thread = threading.Thread(target=self._run, name="query-model", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from search.catalog.reader import serving_model

        try:
            # The plain reader reads SQLite only; with a database server's catalog the
            # model opens on the normal path.
            found = None if self._settings.catalog else serving_model(self._settings.catalog_path)
            if found is None:
                return
            export = usable_export(self._settings, *found, text=True)
            if export is not None:
                from search.models.onnx.encoder import OnnxEncoder

                self._result = OnnxEncoder(export, prepack=False).load(text=True)
        except Exception:  # noqa: BLE001 - only a head start: the normal path reports errors
            self._result = None

    def close(self) -> None:
        """Wait for the thread: native code still running in a daemon thread while the
        interpreter shuts down can crash it (a query that failed before taking this)."""
        self._thread.join()

    def take(self, model_id: str):
        """The encoder for `model_id` if this preloaded it, else None."""
        self._thread.join()
        result, self._result = self._result, None
        return result if result is not None and result.model_id == model_id else None
