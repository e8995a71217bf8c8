"""Incremental sync of the roots with the catalog, then the index for the active model.

One pass, each step feeding the next: plan (walk the roots, read each root's records
once, write nothing: indexer.sync.plan) → decode the plan's first files while the model
resolves and loads (indexer.sync.prefetch) → embed (indexer.sync.pipeline) → write (the run's
CatalogWriter: the folder changes once the model is known to load, then one transaction
per batch) → the FAISS index, rebuilt last. The serving model only switches once every
reachable image has a vector.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial

from indexer.sync.backfill import fill_keywords
from indexer.sync.devicedecode import DeviceCollate, device_decoder, read_jpeg
from indexer.sync.engines import ONNX_BATCH, export_after_run, onnx_loader, torch_loader
from indexer.sync.pipeline import (
    VideoOptions,
    WorkItem,
    make_decoder,
    run_pipeline,
    stack_pixels,
)
from indexer.sync.plan import missing_vectors, plan_run, run_roots
from indexer.sync.prefetch import Prefetch, prefetched_first, start_prefetch
from indexer.sync.scan import FoundFile, scan_root
from indexer.sync.textread import read_texts, textless_check
from indexer.sync.writer import CatalogWriter
from search.duplicates.groups import duplicate_groups
from search.errors import ConfigError
from search.library import Library
from search.models.encoder import Encoder
from search.models.spec import ModelSource
from search.ocr import TextReader
from search.progress import Progress
from search.settings import Settings


@dataclass
class IndexReport:
    seen: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    failed: int = 0
    elapsed_s: float = 0.0
    images_per_s: float = 0.0
    model_id: str = ""
    moved: int = 0
    embedded: int = 0
    # Changed files whose pixels were not (new keywords, a new date): updated, not embedded.
    kept: int = 0
    # Images catalogued before their embedded words were read, read this run.
    keywords_read: int = 0
    unavailable_roots: list[str] = field(default_factory=list)
    # What embedded this run's images: "torch", "onnx" (the model's export), "" (none).
    engine: str = ""
    # Whether the model was exported to ONNX at the end of this run (once per model).
    exported: bool = False
    # Tags fitted or re-applied for the model at the end of this run (search.tags).
    tags_applied: int = 0
    duplicate_groups: int = 0  # groups of copies, edits and bursts after the run
    text_read: int = 0  # photos whose text was read this run (search.ocr)

    def as_dict(self) -> dict:
        return asdict(self)


def sync(
    lib: Library,
    paths: list[str],
    *,
    progress: bool = True,
    encoder_factory: Callable[[Library, dict], Encoder] | None = None,
) -> IndexReport:
    """Add `paths` as roots (none: all known roots) and bring the catalog and index up to
    date with the active model."""
    started = time.perf_counter()
    report = IndexReport()
    for p in paths:
        if not os.path.isdir(p):
            raise ConfigError(f"{p}: not a folder")
    with lib.lock, lib.catalog.index_run_lock():
        reads_text = lib.reads_text()  # before anything is written: the extra may be missing
        reader = TextReader() if reads_text else None  # its engines serve both passes
        textless = None if reader is None else textless_check(reader)
        spec = lib.active_spec()
        # The model resolves (importing torch) and later loads in a thread, while this one
        # plans the run and starts decoding what it will embed (indexer.sync.prefetch). A model
        # the catalog already holds for this spec is known without torch: then it is
        # resolved only once there is something to embed.
        model_id = lib.known_model_id(spec)
        loader = torch_loader(lib, spec, encoder_factory, start=model_id is None)
        prefetch = source = None
        try:
            new_roots = [os.path.abspath(p) for p in paths]
            roots = run_roots(lib.catalog.roots(), new_roots)
            if not roots:
                raise ConfigError("no folders to index yet: run `imgsearch index FOLDER`")
            scans = scan_roots([r.path for r in roots], lib.settings)
            plan = plan_run(lib.catalog, roots, new_roots, scans)
            missing = missing_vectors(lib.catalog, plan, model_id) if model_id else []
            ahead = plan.work + missing  # (missing_vectors first: it may mark plan.work)
            # A small run on a model with an ONNX export runs on it (indexer.sync.engines).
            here = encoder_factory is None and not lib.settings.ray
            fast = onnx_loader(lib, spec, model_id, len(ahead)) if here else None
            if fast is not None:
                loader = fast
            # On a cluster the actors decode: nothing is read ahead here.
            prefetch = None
            if not lib.settings.ray:
                prefetch = start_prefetch(
                    lib, spec, ahead, light_model=fast is not None, textless=textless
                )
            if prefetch is not None:
                loader.start()  # files to embed: load while they decode
            if model_id is None:
                # Resolved before any change: a model that cannot load must not leave
                # half a one.
                source = loader.source()
                model_id = source.model_id
            writer = CatalogWriter(lib.catalog)
            writer.apply(plan)
            missing = missing_vectors(lib.catalog, plan, model_id)
            work = plan.work + missing
            counts = None
            embed_s = 0.0
            if work:
                source = loader.source()
                if source.model_id != model_id:  # the catalog's id was stale: trust this one
                    model_id = source.model_id
                    missing = missing_vectors(lib.catalog, plan, model_id)
                    work = plan.work + missing
                encoder = loader.encoder()
                writer.start(source, encoder.dim)
                if lib.serving_model is None:
                    # A library's first run: no other model to keep serving, so what
                    # each batch commits is searchable at once, and stays so if the run
                    # dies (a kill, Ctrl-C, a full disk) before its end.
                    writer.on_first_commit = partial(lib.set_serving, model_id)
                embed_started = time.perf_counter()
                if lib.settings.ray:
                    counts = _embed_on_ray(lib, source, encoder, work, writer, progress)
                else:
                    counts = _embed(lib, encoder, work, writer, progress, prefetch, textless)
                embed_s = time.perf_counter() - embed_started
                report.engine = encoder.engine
        except BaseException:
            loader.close(wait=False)  # Ctrl-C must not wait out an import or a download
            raise
        else:
            loader.close()
        finally:
            if prefetch is not None:
                prefetch.close()
        report.model_id = model_id
        catalogued = [i for root in plan.reachable for i in root.catalogued]
        shown = Progress(show=progress, status_file=lib.settings.progress_file)
        report.keywords_read = fill_keywords(
            lib.catalog, catalogued, lib.settings.max_megapixels, shown
        )
        if reads_text:
            reachable = {r.path for r in plan.reachable}
            report.text_read = writer.glanced + read_texts(
                lib.catalog,
                [r.id for r in lib.catalog.roots() if r.path in reachable],
                max_megapixels=lib.settings.max_megapixels,
                workers=lib.settings.decode_workers(),
                shown=shown,
                reader=reader,
            )
        # Every reachable image now has a vector for the model (or failed and left the
        # catalog): the run is complete once the catalog holds the model at all.
        if model_id in {m.model_id for m in lib.catalog.models()}:
            if not lib.store.is_current(model_id):
                lib.store.rebuild(model_id)
            lib.set_serving(model_id)
            lib.set_active(source.spec if source else lib.catalog.model(model_id).spec)
            # From stored vectors: new images get their tags, a new model its own.
            applied = lib.tagger().apply(model_id)
            report.tags_applied = len(applied)
        # Found again only when images changed: `search --collapse` and the UI read them.
        groups = duplicate_groups(lib.catalog, lib.settings.max_megapixels, shown)
        report.duplicate_groups = len(groups)
    if encoder_factory is None:
        # Everything is committed and served already (and the lock free for the next
        # run): an interrupted export loses nothing, and the next run tries again.
        report.exported = export_after_run(lib, model_id, loader, progress)
    report.seen, report.unchanged, report.moved = plan.seen, plan.unchanged, len(plan.moves)
    report.removed = len(plan.removed_ids)
    report.unavailable_roots = plan.unavailable
    if counts is not None:
        report.added, report.kept = counts.ok["new"], counts.kept
        report.updated = counts.ok["changed"] + counts.kept
        report.failed = counts.failed
        report.embedded = sum(counts.ok.values())
    report.elapsed_s = round(time.perf_counter() - started, 3)
    if embed_s:
        # Throughput of the embedding pipeline itself, not of model loading and the scan.
        report.images_per_s = round(report.embedded / embed_s, 2)
    return report


def scan_roots(folders: list[str], settings: Settings) -> dict[str, list[FoundFile]]:
    """Each root walked once (by path)."""
    return {f: list(scan_root(f, settings.exclude, settings.include_hidden)) for f in folders}


def _embed(
    lib: Library,
    encoder: Encoder,
    work: list[WorkItem],
    writer: CatalogWriter,
    progress: bool,
    prefetch: Prefetch | None = None,
    textless: Callable | None = None,
):
    settings = lib.settings
    on_device = settings.decode == "device" or (
        settings.decode == "auto" and encoder.device.startswith("cuda")
    )
    batch = settings.model_batch(encoder.device)
    if settings.batch_size == 0 and encoder.engine == "onnx":
        batch = ONNX_BATCH  # a small run: the first batch embeds while the rest decode
    decoder = partial(
        make_decoder,
        encoder.prepare,
        max_megapixels=settings.max_megapixels,
        min_side=encoder.image_size,
        video=VideoOptions.of(settings),
        textless=textless,
    )
    cpu_decode = decoder()
    decode, collate = cpu_decode, stack_pixels
    if on_device:
        decode = decoder(for_device=read_jpeg)
        # The CPU decoder stays, for the files the device refuses.
        collate = DeviceCollate(device_decoder(encoder), cpu_decode)
    if prefetch is not None:
        prefetch.stop()
        if prefetch.matches(encoder):
            decode = prefetched_first(prefetch, decode)
    shown = Progress(show=progress, status_file=settings.progress_file)
    with shown.bar(len(work), desc="indexing", unit="img") as bar:
        return run_pipeline(
            work,
            decode=decode,
            encode=encoder.encode_pixels,
            write=writer.write,
            batch_size=batch,
            workers=settings.decode_workers(),
            progress=bar.update,
            collate=collate,
            # Undecoded JPEGs weigh megabytes each, not a model input's 150 KB: hold one
            # batch and a little more, not two.
            lookahead=batch + 4 * settings.decode_workers() if on_device else None,
        )


def _embed_on_ray(
    lib: Library,
    source: ModelSource,
    encoder: Encoder,
    work: list[WorkItem],
    writer: CatalogWriter,
    progress: bool,
):
    from indexer.cluster.rayrun import ActorSetup, embed_on_ray, run_folder

    settings = lib.settings
    setup = ActorSetup(
        source=source,
        device=settings.device,
        precision=settings.precision,
        max_megapixels=settings.max_megapixels,
        video=VideoOptions.of(settings),
        batch=settings.model_batch(encoder.device),
    )
    shown = Progress(show=progress, status_file=settings.progress_file)
    with shown.bar(len(work), desc="indexing on Ray", unit="img") as bar:
        return embed_on_ray(
            work,
            address=settings.ray,
            setup=setup,
            run_dir=run_folder(settings.home),
            write=writer.write,
            progress=bar.update,
        )
