"""Which engine embeds an index run, and the model's ONNX export after a torch run.

A run on a model with an export runs it without torch when it is small
(search.models.onnx.choose.SMALL_JOB images at most: ONNX Runtime) or when OpenVINO runs the
image tower in bf16 here (any size: search.models.onnx.openvino), so the first image is
embedded about a second after the start instead of after 3–5 s of importing torch and
building the model. A larger run without OpenVINO, or a model without an export, runs
torch, faster per image than ONNX Runtime once loaded (bf16 where the CPU has it); and at
its end, once the run's work is committed and served, the
model is exported (once per model), so the next query and small run need no torch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from indexer.sync.prefetch import ModelLoader
from search.library import Library
from search.models.encoder import ClipEncoder, Encoder
from search.models.onnx import store
from search.models.onnx.choose import (
    export_allowed,
    index_engine,
    openvino_cache,
    usable_export,
)
from search.models.spec import ModelSpec
from search.progress import Progress

log = logging.getLogger(__name__)

EncoderFactory = Callable[[Library, dict], Encoder]

# Images per batch on the export. ONNX Runtime runs a ViT as fast per image in batches of
# 8 as of 32 (within 6%), and a small run's first batch then embeds while the rest decode.
ONNX_BATCH = 8


def torch_loader(
    lib: Library, spec: ModelSpec, encoder_factory: EncoderFactory | None, *, start: bool
) -> ModelLoader:
    return ModelLoader(
        lambda: lib.resolve(spec),
        (lambda _src: encoder_factory(lib, spec)) if encoder_factory else lib.load_source,
        start=start,
    )


def onnx_loader(
    lib: Library, spec: ModelSpec, model_id: str | None, jobs: int
) -> ModelLoader | None:
    """A loader for the model's export when this run wants one: a small run (`jobs`
    images to embed, from the plan), or any run whose image tower OpenVINO runs in bf16
    here; None: use torch (also when the model's id is not known without torch)."""
    settings = lib.settings
    export = usable_export(settings, model_id, spec, image=True) if model_id else None
    if export is None:
        return None
    # A small run takes the export whichever runtime runs it, so that is decided in the
    # loader's thread while decoding starts; a large one only when OpenVINO can.
    small = index_engine(settings, jobs) == "onnx"
    openvino = None if small else openvino_cache(settings, export)
    if not small and openvino is None:
        return None
    source = replace(export.model_source(), spec=spec)

    def load(_source) -> Encoder:
        from search.models.onnx.encoder import OnnxEncoder

        cache = openvino_cache(settings, export) if small else openvino
        # Prepacking the weights (ONNX Runtime) costs 0.5 s of CPU as the session opens
        # and saves ~10 ms per image after: not worth it for runs this small.
        encoder = OnnxEncoder(export, prepack=False, openvino_cache=cache)
        return encoder.load(text=False, image=True)

    return ModelLoader(lambda: source, load, start=False)


def export_after_run(lib: Library, model_id: str, loader: ModelLoader, progress: bool) -> bool:
    """Export the serving model if it has no export yet (nor a recorded refusal); True
    when one was made. Uses the run's torch model when it is the fp32 one."""
    settings = lib.settings
    cache = settings.cache_dir
    if not export_allowed(settings) or lib.serving_model != model_id:
        return False
    if store.find(cache, model_id) is not None or store.refusal(cache, model_id) is not None:
        return False
    encoder = loader.loaded()
    if encoder is not None and not isinstance(encoder, ClipEncoder):
        return False  # an injected encoder (tests) or the export itself: nothing to export
    try:
        spec = lib.catalog.model(model_id).spec
        source = loader.source() if loader.started else lib.resolve(spec)
        if source.model_id != model_id:
            return False
        from search.models.onnx.export import export_model

        shown = Progress(show=progress, status_file=settings.progress_file)
        with shown.bar(3, desc="preparing fast search (once per model)", unit="step") as bar:
            made = export_model(
                source,
                models_dir=settings.models_dir,
                cache_dir=cache,
                encoder=encoder,
                progress=bar.update,
            )
            if made is not None:
                # OpenVINO's check and compiled graph, now rather than in the next run.
                openvino_cache(settings, made)
            bar.update(1)
    except Exception as exc:  # noqa: BLE001 - the run's work is done; torch still answers
        log.warning("could not prepare %s for fast search: %s", model_id, exc)
        return False
    return made is not None
