"""Duplicates in the catalog: each image's signature, and the groups last found, stamped
with the state of the images they were found from (so a stale set is known as such)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from search.catalog.schema import DuplicateMember, Image, Setting

STATE_KEY = "duplicates.state"
CHANGES_KEY = "images.pixel_changes"  # a counter, moved on by every write of new pixels


def mark_pixels_changed(s: Session) -> None:
    """Within a catalog write that stores or removes pixels: the stored groups are stale."""
    current = s.scalar(select(Setting).where(Setting.key == CHANGES_KEY))
    if current is None:
        s.add(Setting(key=CHANGES_KEY, value="1"))
    else:
        current.value = str(int(current.value) + 1)


@dataclass(frozen=True)
class Signatures:
    ids: np.ndarray  # (N,) int64
    signatures: np.ndarray  # (N, SIZE) uint8
    sizes: np.ndarray  # (N, 2) upright width, height
    taken: np.ndarray  # (N,) capture time in seconds, nan when unknown


@dataclass(frozen=True)
class StoredGroup:
    group_id: int
    kind: str
    ids: tuple[int, ...]


class DuplicateStore:
    def __init__(self, session: Callable[[], Session], tx: Callable[[], Session]) -> None:
        self._session = session
        self._tx = tx

    def unsigned(self) -> list[tuple[int, str]]:
        """(id, path) of the images without a signature yet."""
        # Videos have none: the duplicate finder compares photos.
        stmt = (
            select(Image.id, Image.path)
            .where(Image.signature.is_(None), Image.duration.is_(None))
            .order_by(Image.id)
        )
        with self._session() as s:
            return [(i, p) for i, p in s.execute(stmt)]

    def set_signatures(self, rows: Iterable[tuple[int, bytes]]) -> None:
        with self._tx() as s:
            for image_id, sig in rows:
                s.execute(update(Image).where(Image.id == image_id).values(signature=sig))

    def signatures(self, size: int) -> Signatures:
        """Every image with a signature of `size` bytes, by id."""
        stmt = (
            select(Image.id, Image.signature, Image.width, Image.height, Image.taken_at)
            .where(func.length(Image.signature) == size)
            .order_by(Image.id)
        )
        with self._session() as s:
            rows = s.execute(stmt).all()
        ids = np.array([r[0] for r in rows], np.int64)
        sigs = np.frombuffer(b"".join(r[1] for r in rows), np.uint8).reshape(len(rows), size)
        sizes = np.array([(r[2], r[3]) for r in rows], np.int64).reshape(len(rows), 2)
        taken = np.array([np.nan if r[4] is None else r[4].timestamp() for r in rows])
        return Signatures(ids, sigs, sizes, taken)

    def state(self) -> str:
        """Changes whenever an image is added, removed or given new pixels; not when a
        file is moved or touched, or embedded by another model."""
        with self._session() as s:
            changes = s.scalar(select(Setting.value).where(Setting.key == CHANGES_KEY))
            count, top = s.execute(select(func.count(Image.id), func.max(Image.id))).one()
        return f"{count}:{top}:{changes or 0}"

    def stored_state(self) -> str | None:
        with self._session() as s:
            return s.scalar(select(Setting.value).where(Setting.key == STATE_KEY))

    def replace(self, groups: Sequence[tuple[str, Sequence[int]]], state: str) -> None:
        """The groups found from the images in `state`, replacing all before."""
        rows = [
            {"group_id": n, "image_id": image_id, "kind": kind}
            for n, (kind, ids) in enumerate(groups, start=1)
            for image_id in ids
        ]
        with self._tx() as s:
            s.execute(delete(DuplicateMember))
            if rows:
                s.execute(insert(DuplicateMember), rows)
            s.execute(delete(Setting).where(Setting.key == STATE_KEY))
            s.add(Setting(key=STATE_KEY, value=state))

    def groups(self) -> list[StoredGroup]:
        """The stored groups, exact first, then near, then bursts; members by id. A group
        whose images were removed since keeps the rest (and is left out below two)."""
        stmt = select(DuplicateMember.group_id, DuplicateMember.kind, DuplicateMember.image_id)
        found: dict[int, tuple[str, list[int]]] = {}
        with self._session() as s:
            for group_id, kind, image_id in s.execute(stmt.order_by(DuplicateMember.image_id)):
                found.setdefault(group_id, (kind, []))[1].append(image_id)
        order = {"exact": 0, "near": 1, "burst": 2}
        out = [StoredGroup(g, k, tuple(ids)) for g, (k, ids) in found.items() if len(ids) > 1]
        return sorted(out, key=lambda g: (order.get(g.kind, 3), g.ids))
