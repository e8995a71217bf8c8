"""The embedding pipeline: reader → decoder (threads) → collate → encoder (batches) → writer.

Each stage is a plain callable so tests can swap any of them (clip-retrieval's seam).
A video is one item whose decode gives several frames (search.videos): they are embedded
together, and the video's own vector is their mean.
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
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import BinaryIO

import numpy as np
from PIL import Image

from indexer.sync.backoff import TOO_LARGE, Backoff
from indexer.sync.scan import file_hash, storable_path
from search.catalog.records import FailureData, FrameSet, ImageData, utcnow
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
from search.settings import Settings
from search.videos import is_video, read_video

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
    # A video: its length, and the times of its frames (`pixels` holds one row each);
    # once embedded, the frames' vectors.
    duration: float | None = None
    frame_times: tuple[float, ...] = ()
    frame_vectors: np.ndarray | None = None
    # The text-presence glance saw no text in the decoded pixels (indexer.sync.textread):
    # the reading pass need not decode the photo again.
    textless: bool = False

    @property
    def frames(self) -> FrameSet | None:
        if self.frame_vectors is None:
            return None
        return FrameSet(self.frame_times, self.frame_vectors)

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
            duration=self.duration,
        )


@dataclass(frozen=True)
class Failed:
    item: WorkItem
    reason: str

    def as_failure(self, root_id: int) -> FailureData:
        i = self.item
        return FailureData(root_id, storable_path(i.path), i.size, i.mtime_ns, self.reason)


@dataclass(frozen=True)
class VideoOptions:
    """How videos are sampled and bounded (Settings.video_*; search.videos)."""

    every: float = Settings.video_every
    most: int = Settings.video_frames
    timeout: float = Settings.video_timeout

    @classmethod
    def of(cls, settings: Settings) -> VideoOptions:
        return cls(settings.video_every, settings.video_frames, settings.video_timeout)


def make_decoder(
    prepare: Callable,
    *,
    max_megapixels: float,
    min_side: int,
    for_device: Callable[[BinaryIO, ImageHeader], object | None] | None = None,
    video: VideoOptions | None = None,
    textless: Callable[[Image.Image], bool] | None = None,
) -> Callable[[WorkItem], Decoded | Failed]:
    """A function that turns one file into model-ready pixels, or a failure with a reason.

    The file is opened once: hashed, then its header read or the image decoded, from the
    same open file. With `for_device`, files it returns bytes for (from the open file and
    its header) are left undecoded for the device. `textless` (a library reading text)
    tells from the decoded pixels that a photo holds no text. It never raises: one bad
    file must not stop a run.
    """
    video = video or VideoOptions()

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
            if is_video(item.path):
                return decode_video(item, read_at)
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
            # Pixels the catalog holds already (a photo embedded for another model, a file
            # whose metadata alone changed) keep the text read in them: no glance.
            new_pixels = item.kind != "reembed" and pixel_hash != item.pixel_hash
            looks = image is not None and textless is not None and new_pixels
            blank = looks and textless(image.image)
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
            textless=blank,
        )

    def decode_video(item: WorkItem, read_at: datetime) -> Decoded | Failed:
        with open(item.path, "rb") as f:
            digest = file_hash(f, item.size)
            f.seek(0)
            frames = read_video(
                f,
                every=video.every,
                most=video.most,
                min_side=min_side,
                max_megapixels=max_megapixels,
                timeout=video.timeout,
            )
            after = os.fstat(f.fileno())
        if (after.st_size, after.st_mtime_ns) != (item.size, item.mtime_ns):
            return Failed(item, CHANGED_DURING_READ)
        # No pixel digest (a changed video is embedded again) and no signature (the
        # duplicate finder compares photos). Held as float16 until embedded: up to 40
        # frames wait in the look-ahead per video, 12 MB instead of 24 at 224 px.
        return Decoded(
            item,
            digest,
            frames.width,
            frames.height,
            frames.taken_at,
            np.stack([prepare(im) for im in frames.images]).astype(np.float16),
            read_at=read_at,
            duration=frames.duration,
            frame_times=frames.times,
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

    def add(self, ok: list[Decoded], bad: list[Failed], kept: list[Decoded]) -> None:
        self.ok.update(r.item.kind for r in ok)
        self.failed += len(bad)
        self.kept += len(kept)


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
        ok, vectors, bad, kept = embed_batch(batch, fitting, collate)
        write(ok, vectors, bad, kept)
        counts.add(ok, bad, kept)
        progress(len(batch))
    return counts


def embed_batch(
    batch: list[Decoded | Failed], fitting: Backoff, collate: Collate = stack_pixels
) -> tuple[list[Decoded], np.ndarray, list[Failed], list[Decoded]]:
    """One batch of decoded files embedded: (the embedded ones, their vectors, the
    failed ones, the changed files whose pixels were not: `kept`, not embedded). The
    rows of `vectors` follow the embedded ones."""
    ok = [r for r in batch if isinstance(r, Decoded) and not r.same_pixels]
    kept = [r for r in batch if isinstance(r, Decoded) and r.same_pixels]
    bad = [r for r in batch if isinstance(r, Failed)]
    videos = [r for r in ok if r.frame_times]
    ok = [r for r in ok if not r.frame_times]
    vectors = np.zeros((0, 0), "f4")
    if ok:
        ok, pixels, late = collate(ok)
        bad += late
    if ok:
        ok, vectors, too_large = fitting(ok, pixels)
        bad += [Failed(r.item, TOO_LARGE) for r in too_large]
    if videos:
        embedded, video_vectors, too_large = _embed_videos(videos, fitting)
        bad += too_large
        if embedded:
            vectors = np.concatenate([vectors, video_vectors]) if ok else video_vectors
            ok += embedded
    return ok, vectors, bad, kept


def _embed_videos(videos: list[Decoded], fitting: Backoff):
    """Each video's frames embedded (as one batch, halved on out-of-memory like any):
    (the videos with their frame vectors, each video's vector, the failed ones). A
    video's vector is the mean of its frames', for what scores whole images (tags)."""
    done, means, failed = [], [], []
    for video in videos:
        rows = list(range(len(video.frame_times)))
        _, frame_vectors, too_large = fitting(rows, video.pixels.astype(np.float32))
        if too_large:
            failed.append(Failed(video.item, TOO_LARGE))
            continue
        mean = frame_vectors.mean(axis=0)
        means.append(mean / max(float(np.linalg.norm(mean)), 1e-12))
        done.append(replace(video, pixels=None, frame_vectors=frame_vectors))
    return done, np.stack(means).astype(np.float32) if means else None, failed
