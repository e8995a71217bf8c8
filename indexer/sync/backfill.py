"""Embedded words for images catalogued before the catalog kept them (revision 0004 added
the column as NULL: not read yet). Read from each file's header, no pixels decoded and
nothing re-embedded, once; the lexical index takes them through its triggers."""

from __future__ import annotations

from search.catalog.store import Catalog
from search.errors import ImageDecodeError
from search.imageio import read_header
from search.progress import Progress

BATCH = 500  # rows per transaction: an interrupted backfill keeps what it wrote


def fill_keywords(
    catalog: Catalog, root_ids: list[int], max_megapixels: float, shown: Progress
) -> int:
    """Read the words of the roots' images that have none recorded; returns how many."""
    todo = [row for root_id in root_ids for row in catalog.unread_keywords(root_id)]
    if not todo:
        return 0
    found: list[tuple[int, str]] = []
    with shown.bar(len(todo), desc="reading keywords", unit="img") as bar:
        for image_id, path in todo:
            try:
                words = read_header(path, max_megapixels=max_megapixels).keywords
            except ImageDecodeError:  # unreadable now: recorded as having none
                words = ""
            found.append((image_id, words))
            bar.update(1)
            if len(found) >= BATCH:
                catalog.set_keywords(found)
                found = []
    catalog.set_keywords(found)
    return len(todo)
