"""Incremental sync of the roots with the catalog, then the index for the active model.

Plan first (cheap: stat calls and catalog reads), then apply: moves and removals in one
transaction each, new and changed files through the embedding pipeline, the FAISS index
rebuilt last. The serving model only switches once every reachable image has a vector.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial

import numpy as np

from indexer.devicedecode import DeviceCollate, device_decoder, read_jpeg
from indexer.engines import ONNX_BATCH, export_after_run, onnx_loader, torch_loader
from indexer.pipeline import (
    Decoded,
    Failed,
    WorkItem,
    make_decoder,
    run_pipeline,
    stack_pixels,
)
from indexer.prefetch import Prefetch, prefetched_first, start_prefetch
from indexer.scan import FoundFile, content_hash, scan_root, storable_path
from search.encoder import Encoder
from search.errors import ConfigError
from search.library import Library
from search.progress import Progress
from search.records import RootInfo


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
    unavailable_roots: list[str] = field(default_factory=list)
    # What embedded this run's images: "torch", "onnx" (the model's export), "" (none).
    engine: str = ""
    # Whether the model was exported to ONNX at the end of this run (once per model).
    exported: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Plan:
    work: list[WorkItem] = field(default_factory=list)
    moves: list[tuple[int, str, int, int]] = field(default_factory=list)
    removed_ids: list[int] = field(default_factory=list)
    stale_failures: list[str] = field(default_factory=list)
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    seen: int = 0


def root_available(root: RootInfo, found: list[FoundFile], catalogued: int) -> bool:
    """A missing folder, or one that lost every file at once, is an unplugged drive or an
    unmounted share far more often than a deliberate delete: don't sweep it."""
    return os.path.isdir(root.path) and (bool(found) or catalogued == 0)


def plan_sync(
    lib: Library,
    roots: list[RootInfo],
    report: IndexReport,
    scans: dict[str, list[FoundFile]] | None = None,
) -> Plan:
    """What to embed, move and remove; `scans` holds roots already walked (by path)."""
    plan = Plan()
    exclude = lib.settings.exclude
    gone: dict[int, list] = defaultdict(list)  # size → catalogued files no longer found
    new: list[tuple[RootInfo, FoundFile]] = []
    for root in roots:
        records = lib.catalog.file_records(root.id)
        failures = lib.catalog.failure_records(root.id)
        found = (scans or {}).get(root.path)
        if found is None:
            found = list(scan_root(root.path, exclude))
        if not root_available(root, found, len(records)):
            report.unavailable_roots.append(root.path)
            continue
        plan.seen += len(found)
        found_paths = set()
        for f in found:
            found_paths.add(f.path)
            rec = records.get(f.path)
            if rec is not None:
                if (rec.size, rec.mtime_ns) == (f.size, f.mtime_ns):
                    plan.unchanged += 1
                else:
                    plan.updated += 1
                    plan.work.append(WorkItem(root.id, f.path, f.size, f.mtime_ns, "changed"))
            elif failures.get(storable_path(f.path)) == (f.size, f.mtime_ns):
                plan.unchanged += 1  # known bad and untouched: not worth another try
            else:
                new.append((root, f))
        for path, rec in records.items():
            if path not in found_paths:
                gone[rec.size].append(rec)
        found_text = {storable_path(p) for p in found_paths}
        plan.stale_failures += [p for p in failures if p not in found_text]
    for root, f in new:
        match = _match_moved(gone.get(f.size), f)
        if match is not None:
            gone[f.size].remove(match)
            plan.moves.append((match.id, f.path, root.id, f.mtime_ns))
        else:
            plan.added += 1
            plan.work.append(WorkItem(root.id, f.path, f.size, f.mtime_ns))
    plan.removed_ids = [rec.id for recs in gone.values() for rec in recs]
    return plan


def _match_moved(candidates: list | None, f: FoundFile):
    """The catalogued file that `f` is, moved or renamed: same size and content hash."""
    if not candidates:
        return None
    try:
        digest = content_hash(f.path, f.size)
    except OSError:
        return None
    return next((rec for rec in candidates if rec.content_hash == digest), None)


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
    with lib.lock:
        spec = lib.active_spec()
        # The model resolves (importing torch) and later loads in a thread, while this one
        # walks the folders and starts decoding what will need embedding (indexer.prefetch).
        # A model the catalog already holds for this spec is known without torch: then it
        # is resolved only once there is something to embed.
        model_id = lib.known_model_id(spec)
        loader = torch_loader(lib, spec, encoder_factory, start=model_id is None)
        prefetch = source = None
        try:
            scans = scan_roots(lib, [os.path.abspath(p) for p in paths])
            files = None
            # A small run on a model with an ONNX export runs on it (indexer.engines).
            fast = onnx_loader(lib, spec, model_id, scans) if encoder_factory is None else None
            if fast is not None:
                loader, files = fast
            prefetch = start_prefetch(lib, spec, scans, files, light_model=fast is not None)
            if prefetch is not None:
                loader.start()  # files to embed: load while they decode
            if model_id is None:
                # Resolved before any change: a model that cannot load must not leave
                # half a one.
                source = loader.source()
                model_id = source.model_id
            for p in paths:
                lib.catalog.add_root(os.path.abspath(p))
            roots = lib.catalog.roots()
            if not roots:
                raise ConfigError("no folders to index yet: run `imgsearch index FOLDER`")
            plan = plan_sync(lib, roots, report, scans)
            lib.catalog.move_images(plan.moves)
            lib.catalog.remove_images(plan.removed_ids)
            lib.catalog.remove_failures(plan.stale_failures)
            reachable = {r.id for r in roots if r.path not in report.unavailable_roots}
            fresh = plan.work
            plan.work = fresh + _reembed(lib, reachable, model_id)
            counts = None
            embed_s = 0.0
            if plan.work:
                source = loader.source()
                if source.model_id != model_id:  # the catalog's id was stale: trust this one
                    model_id = source.model_id
                    plan.work = fresh + _reembed(lib, reachable, model_id)
                encoder = loader.encoder()
                lib.catalog.ensure_model(source.model_id, source.spec, encoder.dim)
                embed_started = time.perf_counter()
                counts = _embed(lib, encoder, plan.work, progress, prefetch)
                embed_s = time.perf_counter() - embed_started
                report.engine = getattr(encoder, "engine", "torch")
        except BaseException:
            loader.close(wait=False)  # Ctrl-C must not wait out an import or a download
            raise
        else:
            loader.close()
        finally:
            if prefetch is not None:
                prefetch.close()
        report.model_id = model_id
        if _complete(lib, model_id, reachable):
            if not lib.store.is_current(model_id):
                lib.store.rebuild(model_id)
            lib.set_serving(model_id)
            lib.set_active(source.spec if source else lib.catalog.model(model_id).spec)
    if encoder_factory is None:
        # Everything is committed and served already (and the lock free for the next
        # run): an interrupted export loses nothing, and the next run tries again.
        report.exported = export_after_run(lib, model_id, loader, progress)
    report.seen, report.unchanged, report.moved = plan.seen, plan.unchanged, len(plan.moves)
    report.removed = len(plan.removed_ids)
    if counts is not None:
        report.added, report.updated = counts.ok["new"], counts.ok["changed"]
        report.failed = counts.failed
        report.embedded = sum(counts.ok.values())
    report.elapsed_s = round(time.perf_counter() - started, 3)
    if embed_s:
        # Throughput of the embedding pipeline itself, not of model loading and the scan.
        report.images_per_s = round(report.embedded / embed_s, 2)
    return report


def _reembed(lib: Library, root_ids: set[int], model_id: str) -> list[WorkItem]:
    """Catalogued, unchanged images that have no vector for this model yet."""
    return [
        WorkItem(root_id, r.path, r.size, r.mtime_ns, "reembed", r.id)
        for root_id in sorted(root_ids)
        for r in lib.catalog.missing_embeddings(model_id, root_id)
    ]


def scan_roots(lib: Library, new_paths: list[str]) -> dict[str, list[FoundFile]]:
    """Every known root and every folder about to be added, walked once (by path)."""
    folders = dict.fromkeys([r.path for r in lib.catalog.roots()] + new_paths)
    return {f: list(scan_root(f, lib.settings.exclude)) for f in folders}


def _complete(lib: Library, model_id: str, root_ids: set[int]) -> bool:
    if model_id not in {m.model_id for m in lib.catalog.models()}:
        return False  # nothing was ever embedded with it: an empty library
    return not any(lib.catalog.missing_embeddings(model_id, r) for r in root_ids)


def _embed(
    lib: Library,
    encoder: Encoder,
    work: list[WorkItem],
    progress: bool,
    prefetch: Prefetch | None = None,
):
    settings = lib.settings
    catalog = lib.catalog
    model_id = encoder.model_id

    def write(ok: list[Decoded], vectors: np.ndarray, bad: list[Failed]) -> None:
        again = [i for i, d in enumerate(ok) if d.item.kind == "reembed"]
        fresh = [i for i, d in enumerate(ok) if d.item.kind != "reembed"]
        if again:
            catalog.add_vectors(model_id, [ok[i].item.image_id for i in again], vectors[again])
        if fresh or bad:
            catalog.write_batch(
                model_id,
                [ok[i].data for i in fresh],
                vectors[fresh] if fresh else np.zeros((0, encoder.dim), np.float32),
                [f.as_failure() for f in bad],
            )

    device = getattr(encoder, "device", "cpu")
    on_device = settings.decode == "device" or (
        settings.decode == "auto" and device.startswith("cuda")
    )
    batch = settings.model_batch(device)
    if settings.batch_size == 0 and getattr(encoder, "engine", "") == "onnx":
        batch = ONNX_BATCH  # a small run: the first batch embeds while the rest decode
    decoder = partial(
        make_decoder,
        encoder.prepare,
        max_megapixels=settings.max_megapixels,
        min_side=encoder.image_size,
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
            write=write,
            batch_size=batch,
            workers=settings.decode_workers(),
            progress=bar.update,
            collate=collate,
            # Undecoded JPEGs weigh megabytes each, not a model input's 150 KB: hold one
            # batch and a little more, not two.
            lookahead=batch + 4 * settings.decode_workers() if on_device else None,
        )
