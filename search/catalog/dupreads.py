"""The duplicate read a search makes (collapsing results), in plain SQL for both catalogs
(as search.catalog.tagreads): `execute` is sqlite3's Connection.execute or SQLAlchemy's
exec_driver_sql."""

from __future__ import annotations

from collections.abc import Sequence

from search.catalog.lexical import Execute

CHUNK = 500


def photo_groups(execute: Execute, ids: Sequence[int]) -> dict[int, tuple[int, ...]]:
    """For each of `ids` in a group of exact copies or edits: every image of the largest
    such group it is in (a photo's edits include its copies)."""
    ids = [int(i) for i in ids]
    groups: dict[int, list[int]] = {}
    # In chunks: a relevant-only search may collapse thousands of hits at once.
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        marks = ", ".join("?" * len(chunk))
        rows = execute(
            "SELECT group_id, image_id FROM duplicate_members WHERE group_id IN "
            f"(SELECT group_id FROM duplicate_members WHERE image_id IN ({marks}) "
            "AND kind IN ('exact', 'near')) ORDER BY image_id",
            tuple(chunk),
        )
        for group_id, image_id in rows:
            members = groups.setdefault(group_id, [])
            if image_id not in members:
                members.append(image_id)
    out: dict[int, tuple[int, ...]] = {}
    for members in sorted(groups.values(), key=len):
        for image_id in members:
            out[image_id] = tuple(sorted(members))  # larger groups, later, win
    return {i: out[i] for i in ids if i in out}
