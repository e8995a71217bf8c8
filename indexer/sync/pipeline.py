"""The embedding pipeline: reader → decoder (threads) → collate → encoder (batches) → writer.

Each stage is a plain callable so tests can swap any of them (clip-retrieval's seam).
Decoding runs ahead of the model in a thread pool (Pillow releases the GIL while it
decodes and resizes); every batch is written in one transaction, so an interrupted run
keeps every batch before the interruption. On a GPU the threads may leave JPEGs undecoded
for the collate stage to decode on the device in one call (indexer.sync.devicedecode).
"""

from __future__ import annotations

import os
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO

import numpy as np

from indexer.sync.backoff import TOO_LARGE, Backoff
from indexer.sync.scan import file_hash, storable_path
from search.catalog.records import FailureData, ImageData, utcnow
from search.codecs import missing_codec
from search.duplicates.signature import signature
from search.errors import ImageDecodeError
from search.imageio import (
    UNSUPPORTED_FORMATS,
    ImageHeader,
    load_image,
    pixel_digest,
    read_header,
)

# RELIABILITY 20: a file still being written (a copy in progress, an editor saving) is
# not stored half-read; its failure keeps the scan's size and time, so the next run, which
# finds the file's new ones, tries it again.
CHANGED_DURING_READ = (
    "changed_during_read: the file changed while it was read; the next run indexes it"
)


@dataclass(frozen=True)
class WorkItem:
    root: str  # the path of the root the file is under (roots added by this run have no id yet)
    path: str
    size: int
    mtime_ns: int
    # "new", "changed", or "reembed": a catalogued, unchanged image that only needs a
    # vector for another model (then image_id is set).
    kind: str = "new"
    image_id: int | None = None
    # A changed file's catalogued pixel digest: when the decoded pixels still have it,
    # the file keeps its vectors (only its metadata changed). None: always embed.
    pixel_hash: str | None = None


@dataclass(frozen=True)
class Decoded:
    item: WorkItem
    content_hash: str
    width: int  # upright, full resolution
    height: int
    taken_at: datetime | None
    pixels: np.ndarray | None  # None while `encoded` still waits for the device decoder
    encoded: object | None = None  # the file's bytes for the device (devicedecode.JpegBytes)
    read_at: datetime | None = None  # when the read began (plan.py's racy-file check)
    keywords: str = ""  # words embedded in the file, for the lexical index
    pixel_hash: str | None = None  # pixel_digest of the decoded image (None: not decoded)
    signature: bytes | None = None  # for the duplicate finder (None: not decoded)

    @property
    def same_pixels(self) -> bool:
        """A changed file whose pixels are as catalogued: its vectors stay valid."""
        return self.pixel_hash is not None and self.pixel_hash == self.item.pixel_hash

    def image_data(self, root_id: int) -> ImageData:
        i = self.item
        date = self.taken_at or datetime.fromtimestamp(i.mtime_ns / 1e9)
        return ImageData(
            root_id=root_id,
            path=i.path,
            size=i.size,
            mtime_ns=i.mtime_ns,
            content_hash=self.content_hash,
            width=self.width,
            height=self.height,
            taken_at=self.taken_at,
            date=date,
            read_at=self.read_at,
            keywords=self.keywords,
            pixel_hash=self.pixel_hash,
            signature=self.signature,
        )


@dataclass(frozen=True)
class Failed:
    item: WorkItem
    reason: str

    def as_failure(self, root_id: int) -> FailureData:
        i = self.item
        return FailureData(root_id, storable_path(i.path), i.size, i.mtime_ns, self.reason)


def make_decoder(
    prepare: Callable,
    *,
    max_megapixels: float,
    min_side: int,
    for_device: Callable[[BinaryIO, ImageHeader], object | None] | None = None,
) -> Callable[[WorkItem], Decoded | Failed]:
    """A function that turns one file into model-ready pixels, or a failure with a reason.

    The file is opened once: hashed, then its header read or the image decoded, from the
    same open file. With `for_device`, files it returns bytes for (from the open file and
    its header) are left undecoded for the device. It never raises: one bad file must not
    stop a run.
    """

    def decode(item: WorkItem) -> Decoded | Failed:
        if storable_path(item.path) != item.path:
            return Failed(item, "file name is not valid UTF-8; rename the file to index it")
        unsupported = UNSUPPORTED_FORMATS.get(os.path.splitext(item.path)[1].lower())
        unsupported = unsupported or missing_codec(item.path)
        if unsupported is not None:
            return Failed(item, unsupported)  # never opened
        encoded = image = None
        read_at = utcnow()
        try:
            with open(item.path, "rb") as f:
                digest = file_hash(f, item.size)
                # `meta`, a header or a decoded image, carries the upright size and date.
                if for_device is not None:
                    f.seek(0)
                    meta = read_header(f, max_megapixels=max_megapixels, name=item.path)
                    encoded = for_device(f, meta)
                if encoded is None:
                    f.seek(0)
                    meta = image = load_image(
                        f, max_megapixels=max_megapixels, min_side=min_side, name=item.path
                    )
                after = os.fstat(f.fileno())
            if (after.st_size, after.st_mtime_ns) != (item.size, item.mtime_ns):
                return Failed(item, CHANGED_DURING_READ)
            pixels = None if image is None else prepare(image.image)
            pixel_hash = None if image is None else pixel_digest(image.image)
            sig = None if image is None else signature(image.image)
        except ImageDecodeError as exc:
            return Failed(item, exc.reason)
        except OSError as exc:
            return Failed(item, f"cannot read file: {exc.strerror or exc}")
        except Exception as exc:  # noqa: BLE001 - a decoder bug must not stop the run
            return Failed(item, f"unexpected {type(exc).__name__}: {exc}")
        return Decoded(
            item,
            digest,
            meta.width,
            meta.height,
            meta.taken_at,
            pixels,
            encoded,
            read_at,
            meta.keywords,
            pixel_hash,
            sig,
        )

    return decode


def decode_ahead(
    items: Iterable[WorkItem],
    decode: Callable[[WorkItem], Decoded | Failed],
    workers: int,
    lookahead: int,
) -> Iterator[Decoded | Failed]:
    """Results in input order, with at most `lookahead` files in flight."""
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
        pending: deque = deque()
        try:
            for item in items:
                pending.append(pool.submit(decode, item))
                if len(pending) >= lookahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for fut in pending:
                fut.cancel()


def batched(results: Iterable[Decoded | Failed], size: int) -> Iterator[list[Decoded | Failed]]:
    """Groups holding `size` decoded images each (failures ride along for free)."""
    batch: list[Decoded | Failed] = []
    n_ok = 0
    for r in results:
        batch.append(r)
        n_ok += isinstance(r, Decoded)
        if n_ok >= size:
            yield batch
            batch, n_ok = [], 0
    if batch:
        yield batch


@dataclass
class PipelineCounts:
    ok: Counter = field(default_factory=Counter)  # WorkItem.kind → images embedded
    failed: int = 0
    kept: int = 0  # changed files whose pixels were not: written without embedding


Collate = Callable[[list[Decoded]], tuple[list[Decoded], object, list[Failed]]]


def stack_pixels(ok: list[Decoded]) -> tuple[list[Decoded], np.ndarray, list[Failed]]:
    """The CPU collate: every image is already decoded, so the batch is one array."""
    return ok, np.stack([r.pixels for r in ok]), []


def run_pipeline(
    items: Sequence[WorkItem],
    *,
    decode: Callable[[WorkItem], Decoded | Failed],
    encode: Callable[[object], np.ndarray],
    write: Callable[[list[Decoded], np.ndarray, list[Failed], list[Decoded]], None],
    batch_size: int,
    workers: int,
    progress: Callable[[int], None] = lambda n: None,
    collate: Collate = stack_pixels,
    lookahead: int | None = None,
) -> PipelineCounts:
    """`collate` turns a batch's decoded images into the encoder's input; it may find
    more failures (files the device could not decode and the CPU fallback refused).
    Out of memory in `encode` halves the batch (indexer.sync.backoff).
    `lookahead` files are in flight at most (default: two batches)."""
    counts = PipelineCounts()
    lookahead = max(2 * batch_size, 4 * workers) if lookahead is None else lookahead
    fitting = Backoff(encode)
    for batch in batched(decode_ahead(items, decode, workers, lookahead), batch_size):
        ok = [r for r in batch if isinstance(r, Decoded) and not r.same_pixels]
        kept = [r for r in batch if isinstance(r, Decoded) and r.same_pixels]
        bad = [r for r in batch if isinstance(r, Failed)]
        vectors = np.zeros((0, 0), "f4")
        if ok:
            ok, pixels, late = collate(ok)
            bad += late
        if ok:
            ok, vectors, too_large = fitting(ok, pixels)
            bad += [Failed(r.item, TOO_LARGE) for r in too_large]
        write(ok, vectors, bad, kept)
        counts.ok.update(r.item.kind for r in ok)
        counts.failed += len(bad)
        counts.kept += len(kept)
        progress(len(batch))
    return counts
