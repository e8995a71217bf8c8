"""The tag reads a search makes, in plain SQL for both catalogs (as search.catalog.reader's
image reads): `execute` is sqlite3's Connection.execute or SQLAlchemy's exec_driver_sql."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from search.catalog.lexical import Execute
from search.errors import QueryError


def tagged_ids(execute: Execute, names: Sequence[str], model_id: str) -> np.ndarray:
    """Images holding every tag in `names` by this model, ascending. An unknown name is an
    error; a known tag not yet applied for the model holds no image."""
    names = list(dict.fromkeys(names))
    marks = ", ".join("?" * len(names))
    rows = execute(f"SELECT name, id FROM tags WHERE name IN ({marks})", tuple(names))
    known = {name: tag_id for name, tag_id in rows}
    if unknown := [n for n in names if n not in known]:
        raise QueryError(f"no tag named {unknown[0]!r}; {known_tags(execute)}")
    # Images with as many of the tags as were asked for: all of them.
    rows = execute(
        f"SELECT image_id FROM image_tags WHERE model_id = ? AND tag_id IN ({marks}) "
        "GROUP BY image_id HAVING count(*) = ? ORDER BY image_id",
        (model_id, *(known[n] for n in names), len(names)),
    )
    return np.array([r[0] for r in rows], dtype=np.int64)


def image_tags(execute: Execute, ids: Sequence[int], model_id: str) -> dict[int, list[str]]:
    """Each image's tags by this model, by name."""
    out: dict[int, list[str]] = {int(i): [] for i in ids}
    if not out:
        return out
    marks = ", ".join("?" * len(out))
    rows = execute(
        "SELECT image_tags.image_id, tags.name FROM image_tags "
        "JOIN tags ON tags.id = image_tags.tag_id "
        f"WHERE image_tags.model_id = ? AND image_tags.image_id IN ({marks}) "
        "ORDER BY tags.name",
        (model_id, *out),
    )
    for image_id, name in rows:
        out[image_id].append(name)
    return out


def known_tags(execute: Execute, most: int = 20) -> str:
    """The tags there are, for an error message: "tags: a, b, c" (or that there are none)."""
    rows = [r[0] for r in execute("SELECT name FROM tags ORDER BY name LIMIT ?", (most + 1,))]
    if not rows:
        return "there are no tags yet (`imgsearch tags add NAME`)"
    more = ", …" if len(rows) > most else ""
    return "tags: " + ", ".join(rows[:most]) + more


def captioned(execute: Execute) -> dict[int, str]:
    """Every captioned image's captions, joined by new lines."""
    out: dict[int, str] = {}
    for image_id, text in execute("SELECT image_id, text FROM captions ORDER BY id"):
        out[image_id] = f"{out[image_id]}\n{text}" if image_id in out else text
    return out


def captions_version(execute: Execute) -> int:
    """The newest caption's id (0: none). Captions are never edited in place and go only
    with their image, whose removal changes the index too; so a new id is the change that
    matters. max(id) reads one end of the key; count(*) read every row (10 ms at 100,000
    captions on SQLite, on every search)."""
    (newest,) = next(iter(execute("SELECT max(id) FROM captions")))
    return int(newest or 0)
