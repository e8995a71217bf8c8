"""The text OCR read in images (search.ocr), in the catalog: read once per version of a
file (a changed file's row goes with its old pixels), searchable through the lexical
index's `text` column, which triggers keep in step."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from search.catalog.lexical import grams_text
from search.catalog.records import utcnow
from search.catalog.schema import Image, ImageText
from search.ocr import TextLine, dumps, loads


class TextStore:
    def __init__(self, session: Callable[[], Session], tx: Callable[[], Session]) -> None:
        self._session = session
        self._tx = tx

    def unread(self, root_ids: Iterable[int]) -> list[tuple[int, str]]:
        """(id, path) of the roots' photos whose text was never read (videos are not read)."""
        stmt = (
            select(Image.id, Image.path)
            .outerjoin(ImageText, ImageText.image_id == Image.id)
            .where(
                Image.root_id.in_(list(root_ids)),
                Image.duration.is_(None),
                ImageText.image_id.is_(None),
            )
            .order_by(Image.id)
        )
        with self._session() as s:
            return [(i, p) for i, p in s.execute(stmt)]

    def record(self, found: Iterable[tuple[int, list[TextLine]]]) -> None:
        """The lines read in each image (none: read, no text), replacing what was there;
        images deleted meanwhile are left out."""
        rows = [
            {
                "image_id": image_id,
                "text": (text := "\n".join(line.text for line in lines)),
                "folded": grams_text(text),
                "lines": dumps(lines),
                "read_at": utcnow(),
            }
            for image_id, lines in found
        ]
        if not rows:
            return
        ids = [r["image_id"] for r in rows]
        with self._tx() as s:
            present = set(s.scalars(select(Image.id).where(Image.id.in_(ids))))
            s.execute(delete(ImageText).where(ImageText.image_id.in_(ids)))
            rows = [r for r in rows if r["image_id"] in present]
            if rows:
                s.execute(insert(ImageText), rows)

    def lines(self, image_id: int) -> list[TextLine] | None:
        """The lines read in the image; None when it was not read."""
        with self._session() as s:
            raw = s.scalar(select(ImageText.lines).where(ImageText.image_id == image_id))
        return None if raw is None else loads(raw)
