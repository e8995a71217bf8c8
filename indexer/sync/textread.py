"""Reading the text in photos (search.ocr), for libraries that have it on: after the
embedding, every reachable photo whose text was never read is decoded small for the
presence pass (and larger where its glance asks to look closer) and, where that finds
text, again at reading size and read, in threads. Each batch is one transaction, so an
interrupted pass keeps what it read and the next run reads the rest. Unchanged files
are never read twice."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from PIL import Image

from search.catalog.store import Catalog
from search.errors import ImageDecodeError
from search.imageio import load_image
from search.ocr import (
    DECODE_SIDE,
    GLANCE_DECODE_SIDE,
    GLANCE_SIDE,
    PRESENCE_DECODE_SIDE,
    TextLine,
    TextReader,
)
from search.progress import Progress

BATCH = 16  # images a transaction
# The embedding's own decode serves for the glance where it is about as large as the
# glance looks (a 12 MP JPEG decodes at 500 × 375 for a 224 px model): smaller, the
# reading pass decodes the photo for its glance itself.
SHARED_GLANCE_SIDE = int(GLANCE_SIDE * 0.95)
log = logging.getLogger(__name__)


def textless_check(reader: TextReader) -> Callable[[Image.Image], bool]:
    """For the embedding's decode threads (indexer.sync.pipeline.make_decoder): True where
    the glance sees nothing like text in the pixels decoded for the model, which spares
    those photos a second decode in the reading pass (18-30 ms of a core at 12 MP)."""

    def textless(image: Image.Image) -> bool:
        if max(image.size) < SHARED_GLANCE_SIDE:
            return False
        try:
            return reader.glance(image) is False
        except Exception as exc:  # noqa: BLE001 - the reading pass looks again
            log.warning("text glance failed: %s: %s", type(exc).__name__, exc)
            return False

    return textless


def read_texts(
    catalog: Catalog,
    root_ids: list[int],
    *,
    max_megapixels: float,
    workers: int,
    shown: Progress,
    reader: TextReader | None = None,
) -> int:
    """Read the text of the roots' photos that have none recorded; returns how many."""
    todo = catalog.texts.unread(root_ids)
    if not todo:
        return 0
    reader = reader or TextReader()

    def read(row: tuple[int, str]) -> tuple[int, list[TextLine] | None]:
        image_id, path = row
        try:
            # Most photos hold no text: a small decode (JPEG DCT scaling) tells, and only
            # those with text are decoded again at reading size.
            def decoded(side: int):
                return load_image(path, max_megapixels=max_megapixels, min_side=side).image

            glance = decoded(GLANCE_DECODE_SIDE)
            if not reader.has_text(glance, lambda: decoded(PRESENCE_DECODE_SIDE)):
                return image_id, []
            return image_id, reader.read(decoded(DECODE_SIDE))
        except ImageDecodeError:
            return image_id, []  # it decoded when indexed: changed since, the sync will see
        except OSError:
            return image_id, None  # gone or unreadable for now: tried again next run
        except Exception as exc:  # noqa: BLE001 - one picture must not stop the run
            log.warning("no text read in %s: %s: %s", path, type(exc).__name__, exc)
            return image_id, []

    done: list[tuple[int, list[TextLine]]] = []
    with (
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ocr") as pool,
        shown.bar(len(todo), desc="reading text", unit="img") as bar,
    ):
        for image_id, lines in pool.map(read, todo):
            bar.update(1)
            if lines is not None:
                done.append((image_id, lines))
            if len(done) >= BATCH:
                catalog.texts.record(done)
                done = []
        catalog.texts.record(done)
    return len(todo)
