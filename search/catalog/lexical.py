"""The lexical index: the words of each image's file name, folders under its root, typed
captions, embedded keywords and the text OCR read in it, in SQLite FTS5.

Its rows are kept in step by triggers on `images`, `captions` and `image_text`, so every
writer (the indexer's sync, a caption typed in the UI, a rename found by the content hash,
text read, a migration) updates it in the same transaction as the row it derives from,
and none can forget to.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

# The columns, in order; `bm25` weights follow the same order. A typed caption or an
# embedded keyword is a person's own word for the photo, a file or folder name less often so.
FIELDS = ("name", "folder", "caption", "keywords", "text")
WEIGHTS = (1.0, 1.0, 2.0, 2.0, 1.0)

# Path pieces in SQL: `rtrim(p, replace(p, '/', ''))` strips the last component, leaving
# the folder with its trailing slash; the name is what follows it. Folders are taken below
# the root so the words of the root's own path (/home/anna/Pictures) match nothing.
_DIR = "rtrim({p}, replace({p}, '/', ''))"
_NAME = "substr({p}, length(" + _DIR + ") + 1)"
_ROOT = "(SELECT path FROM roots WHERE roots.id = {r})"
_FOLDER = (
    "CASE WHEN substr("
    + _DIR
    + ", 1, length("
    + _ROOT
    + ")) = "
    + _ROOT
    + " THEN substr("
    + _DIR
    + ", length("
    + _ROOT
    + ") + 1) ELSE "
    + _DIR
    + " END"
)
_CAPTIONS = "coalesce((SELECT group_concat(text, ' ') FROM captions WHERE image_id = {i}), '')"
_TEXT = "coalesce((SELECT text FROM image_text WHERE image_id = {i}), '')"


def _row(alias: str, text: bool = True, captions: str = _CAPTIONS) -> str:
    """name, folder, caption, keywords, text of images row `alias` (new, old or images);
    without `text`, its text is empty; `captions`: how this database joins them."""
    p, r, i = f"{alias}.path", f"{alias}.root_id", f"{alias}.id"
    return ", ".join(
        [
            _NAME.format(p=p),
            _FOLDER.format(p=p, r=r),
            captions.format(i=i),
            f"coalesce({alias}.keywords, '')",
            _TEXT.format(i=i) if text else "''",
        ]
    )


def image_triggers(text: bool = True) -> tuple[str, str]:
    """An image's row, written anew when the image is added or renamed; `text`: with the
    text read in it (revision 0008; before, the text table did not exist)."""
    return (
        "CREATE TRIGGER lexical_image_insert AFTER INSERT ON images BEGIN "
        "INSERT INTO lexical (rowid, name, folder, caption, keywords, text) "
        f"VALUES (new.id, {_row('new', text)}); END",
        "CREATE TRIGGER lexical_image_update AFTER UPDATE OF path, root_id, keywords ON images "
        "BEGIN DELETE FROM lexical WHERE rowid = old.id; "
        "INSERT INTO lexical (rowid, name, folder, caption, keywords, text) "
        f"VALUES (new.id, {_row('new', text)}); END",
    )


IMAGE_TRIGGERS = image_triggers()

# Porter stemming folds "weddings" to "wedding"; remove_diacritics folds "Málaga" to
# "malaga"; unicode61 splits on punctuation, so "IMG_2034_beach.jpg" is img 2034 beach jpg.
DDL = (
    "CREATE VIRTUAL TABLE lexical USING fts5(" + ", ".join(FIELDS) + ", "
    "tokenize = 'porter unicode61 remove_diacritics 2')",
    *IMAGE_TRIGGERS,
    "CREATE TRIGGER lexical_image_delete AFTER DELETE ON images BEGIN "
    "DELETE FROM lexical WHERE rowid = old.id; END",
    "CREATE TRIGGER lexical_caption_insert AFTER INSERT ON captions BEGIN "
    f"UPDATE lexical SET caption = {_CAPTIONS.format(i='new.image_id')} "
    "WHERE rowid = new.image_id; END",
    "CREATE TRIGGER lexical_caption_update AFTER UPDATE ON captions BEGIN "
    f"UPDATE lexical SET caption = {_CAPTIONS.format(i='old.image_id')} "
    "WHERE rowid = old.image_id; "
    f"UPDATE lexical SET caption = {_CAPTIONS.format(i='new.image_id')} "
    "WHERE rowid = new.image_id; END",
    "CREATE TRIGGER lexical_caption_delete AFTER DELETE ON captions BEGIN "
    f"UPDATE lexical SET caption = {_CAPTIONS.format(i='old.image_id')} "
    "WHERE rowid = old.image_id; END",
)
# Text read in a photo also goes, folded (`fold`), to a trigram index: OCR drops
# the space between words now and then ("netrabensumire"), and a word typed is still
# found inside such a run, or inside a longer word ("voice" in "invoice").
GRAMS = "lexical_grams"
# Text read (or read again) in an image: its row's text column and its grams follow
# (the table came with revision 0008, after DDL's).
TEXT_TRIGGERS = (
    f"CREATE VIRTUAL TABLE {GRAMS} USING fts5(text, tokenize = 'trigram')",
    *(
        f"CREATE TRIGGER lexical_text_{event.lower()} AFTER {event} ON image_text BEGIN "
        f"UPDATE lexical SET text = {_TEXT.format(i=f'{row}.image_id')} "
        f"WHERE rowid = {row}.image_id; "
        f"DELETE FROM {GRAMS} WHERE rowid = {row}.image_id; "
        + (
            f"INSERT INTO {GRAMS} (rowid, text) VALUES (new.image_id, new.folded); "
            if row == "new"
            else ""
        )
        + "END"
        for event, row in (("INSERT", "new"), ("UPDATE", "new"), ("DELETE", "old"))
    ),
)
# What a new catalog at the newest revision gets.
HEAD_DDL = DDL + TEXT_TRIGGERS
TRIGGERS = tuple(
    re.match(r"CREATE TRIGGER (\w+)", d).group(1) for d in DDL + TEXT_TRIGGERS if "TRIGGER" in d
)


def described_elsewhere(name: str | None, type_: str, _parent) -> bool:
    """Alembic's include_name: False for the FTS5 table and the shadow tables SQLite keeps
    for it (lexical_data, lexical_idx, ...), which the ORM models do not describe (DDL
    above makes them), so autogenerate neither drops nor compares them."""
    return not (type_ == "table" and name is not None and name.split("_")[0] == "lexical")


# Every image already in the catalog (revision 0004, before any text was read).
FILL = (
    "INSERT INTO lexical (rowid, name, folder, caption, keywords, text) "
    f"SELECT images.id, {_row('images', text=False)} FROM images"
)

# At most this many words of a query go to the index: 10 kB pasted into the box is still
# one cheap query.
MAX_TERMS = 16
_WORD = re.compile(r"[^\W_]+")  # as unicode61 splits: "img_2034" is two words


def fold(text: str) -> str:
    """Lower case without accents ("Grüße" → "grusse"), as unicode61's remove_diacritics
    matches words: what the trigram index holds and is asked for."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def terms(text: str) -> list[str]:
    """The words of a query, in order, without repeats. Only word characters survive, so
    FTS5's syntax (quotes, `*`, `-`, `NEAR(`, column filters) is never passed through."""
    seen: dict[str, None] = {}
    for word in _WORD.findall(text.casefold()):
        seen.setdefault(word, None)
    return list(seen)[:MAX_TERMS]


def match_expression(words: list[str], columns: tuple[str, ...] = ()) -> str:
    """Every word must occur (in any of `columns`, default all): `"lisbon" AND "2019"`."""
    quoted = " AND ".join(f'"{w}"' for w in words)
    return "{" + " ".join(columns) + "} : (" + quoted + ")" if columns else quoted


GRAM = 3  # the trigram index finds nothing shorter


def grams_text(text: str) -> str:
    """What the trigram index holds of a photo's text: folded, and each line with spaces
    again without them, so that a word OCR split in two ("dissu loben" for "dissulo ben")
    is still found inside."""
    folded = fold(text)
    joined = [line.replace(" ", "") for line in folded.splitlines() if " " in line]
    return "\n".join([folded, *joined])


def grams_expression(words: list[str], join: str = " AND ") -> str | None:
    """Every word inside the text read in a photo; None when a word is too short to look
    for that way (then only whole words count)."""
    folded = [fold(w) for w in words]
    if not folded or any(len(w) < GRAM for w in folded):
        return None
    return join.join(f'"{w}"' for w in folded)


def _indexes(words: list[str]) -> Iterator[tuple[str, str, str]]:
    """(table, its MATCH argument, its bm25 call) to ask for `words`, in turn: the whole
    words anywhere, then the words inside the text read in photos. Callers stop at the
    first that answers: a fallback, not a union, so a word some image holds whole is not
    diluted by every longer word it is part of ("exit" in "exiting")."""
    weights = ", ".join(str(w) for w in WEIGHTS)
    yield "lexical", match_expression(words), f"bm25(lexical, {weights})"
    grams = grams_expression(words)
    if grams is not None:
        yield GRAMS, grams, f"bm25({GRAMS})"


@dataclass(frozen=True)
class LexicalHit:
    id: int
    rank: float  # bm25: lower is better


# Runs one statement with "?" parameters: sqlite3's Connection.execute, or SQLAlchemy's
# Connection.exec_driver_sql (the catalog's reader and its store share these queries).
Execute = Callable[[str, tuple], Iterable[tuple]]


def search(execute: Execute, words: list[str], limit: int) -> list[LexicalHit]:
    """The images holding every word, best first (bm25 with the field weights)."""
    rows: list = []
    for table, match, rank in _indexes(words) if words else ():
        sql = f"SELECT rowid, {rank} AS r FROM {table} WHERE {table} MATCH ? ORDER BY r LIMIT ?"
        if rows := list(execute(sql, (match, limit))):
            break
    return [LexicalHit(int(i), float(r)) for i, r in rows]


def matching_ids(execute: Execute, words: list[str]) -> list[int]:
    """The ids of every image holding every word, in no order: without bm25, which over a
    broad word's thousands of matches is most of a query's time."""
    rows: list = []
    for table, match, _ in _indexes(words) if words else ():
        if rows := list(execute(f"SELECT rowid FROM {table} WHERE {table} MATCH ?", (match,))):
            break
    return [int(r[0]) for r in rows]


def count(execute: Execute, words: list[str], most: int) -> int:
    """How many images hold every word, counted up to `most` (a broad word's full count
    would cost a pass over all its matches)."""
    for table, match, _ in _indexes(words) if words else ():
        sql = f"SELECT count(*) FROM (SELECT 1 FROM {table} WHERE {table} MATCH ? LIMIT ?)"
        if found := int(next(iter(execute(sql, (match, most))))[0]):
            return found
    return 0


# Around each matched word in a field's text (FTS5 highlight()); control characters no
# name, folder or caption can hold, so a display can mark them without ambiguity.
MARK_START, MARK_END = "\x02", "\x03"
SNIPPET_WORDS = 12
GRAM_SNIPPET = 48  # trigrams: about as many characters


def fields_matched(execute: Execute, words: list[str], ids: list[int]) -> dict[int, dict[str, str]]:
    """For each of `ids`, the fields in which any of `words` occurs (in FIELDS order),
    each with its text, the matched words between MARK_START and MARK_END. One query over
    every column: a column filter ("{folder} : ...") makes FTS5 evaluate the match over
    the whole index first (25 ms for a word in 16,000 of 100,000 images, against 0.2)."""
    found: dict[int, dict[str, str]] = {i: {} for i in ids}
    if not words or not ids:
        return found
    marks = ", ".join("?" * len(ids))
    # Text read in a photo may be a page long: of it, a snippet around the words.
    shown = ", ".join(
        f"snippet(lexical, {c}, char(2), char(3), '…', {SNIPPET_WORDS})"
        if name == "text"
        else f"highlight(lexical, {c}, char(2), char(3))"
        for c, name in enumerate(FIELDS)
    )
    rows = execute(
        f"SELECT rowid, {shown} FROM lexical WHERE lexical MATCH ? AND rowid IN ({marks})",
        (" OR ".join(f'"{w}"' for w in words), *ids),
    )
    for i, *texts in rows:
        found[int(i)] = {f: t for f, t in zip(FIELDS, texts) if MARK_START in t}
    # Words found only inside a photo's text: marked in its folded form.
    grams = grams_expression(words, " OR ")
    inside = [i for i, fields in found.items() if "text" not in fields]
    if grams is not None and inside:
        marks = ", ".join("?" * len(inside))
        rows = execute(
            f"SELECT rowid, snippet({GRAMS}, 0, char(2), char(3), '…', {GRAM_SNIPPET})"
            f" FROM {GRAMS} WHERE {GRAMS} MATCH ? AND rowid IN ({marks})",
            (grams, *inside),
        )
        for i, text in rows:
            found[int(i)]["text"] = text
    return found
