"""The lexical index on PostgreSQL: search.catalog.lexical's index and queries, with a
tsvector (and a GIN index) for FTS5's table and pg_trgm for its trigram table.

The same fields, weights, triggers and query functions (the catalog picks this module or
that one by dialect, search.catalog.backend.lexical); the queries take the same `execute`,
here with psycopg's "%s" parameters. What differs, and why:

- Words are stemmed by Snowball's English stemmer (Porter's successor) where FTS5 uses
  Porter's: "weddings" and "wedding" meet in both, a few rarer words stem apart.
- `search` ranks by `ts_rank` (field weights, divided by the log of the row's length), not
  bm25: no inverse document frequency, so a rare word weighs what a common one does. Its
  `rank` is the negated score, lower is better as with bm25; words found only inside the
  text read in photos rank shorter texts first.
- Splitting words and folding case beyond ASCII follow the database's LC_CTYPE: a UTF-8
  locale (C.UTF-8, en_US.UTF-8) splits as FTS5's unicode61 does; plain "C" does not.
- `fields_matched` marks words and cuts snippets in Python (FTS5's highlight() and
  snippet() rules, the same output), asking the database only how it stems each word.
"""

from __future__ import annotations

import re

from search.catalog.lexical import (  # noqa: F401 - the public names are lexical's too
    _TEXT,
    _WORD,
    FIELDS,
    GRAM,
    GRAM_SNIPPET,
    GRAMS,
    MARK_END,
    MARK_START,
    MAX_TERMS,
    SNIPPET_WORDS,
    WEIGHTS,
    Execute,
    LexicalHit,
    described_elsewhere,
    fold,
    grams_text,
    terms,
)
from search.catalog.lexical import _row as lexical_row

CONFIG = "imgsearch"  # the text search configuration: unaccent, then the English stemmer
ELLIPSIS = "…"

# Field weights as tsvector weight letters (the heaviest A), and ts_rank's array of them
# ({D, C, B, A}, at most 1).
_LETTERS = dict(zip(sorted(set(WEIGHTS), reverse=True), "ABCD"))
_LETTER = {f: _LETTERS[w] for f, w in zip(FIELDS, WEIGHTS)}
_RANK_WEIGHTS = (
    "'{"
    + ", ".join(
        str(next((w / max(WEIGHTS) for w, x in _LETTERS.items() if x == letter), 0.0))
        for letter in "DCBA"
    )
    + "}'"
)

# FTS5's unicode61 splits on anything not a letter or digit ("IMG_2034_beach.jpg" is img
# 2034 beach jpg); PostgreSQL's parser keeps file names whole, so it gets words only.
# (No "[:alnum:]" here: Alembic's op.execute reads ":alnu" as a bind parameter.)
_WORDS = "to_tsvector('" + CONFIG + "', regexp_replace(coalesce({x}, ''), '(\\W|_)+', ' ', 'g'))"
_DOC = " || ".join(f"setweight({_WORDS.format(x='new.' + f)}, '{_LETTER[f]}')" for f in FIELDS)
_CAPTIONS = (
    "coalesce((SELECT string_agg(text, ' ' ORDER BY id) FROM captions WHERE image_id = {i}), '')"
)
_COLUMNS = "(rowid, " + ", ".join(FIELDS) + ")"


def _row(alias: str) -> str:
    """name, folder, caption, keywords, text of images row `alias` (new or images)."""
    return lexical_row(alias, captions=_CAPTIONS)


def _function(name: str, body: str) -> str:
    return (
        f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {body} "
        "RETURN NULL; END $$"
    )


def _trigger(name: str, when: str, table: str, function: str) -> str:
    return f"CREATE TRIGGER {name} {when} ON {table} FOR EACH ROW EXECUTE FUNCTION {function}()"


def _caption(row: str) -> str:
    captions = _CAPTIONS.format(i=row + ".image_id")
    return f"UPDATE lexical SET caption = {captions} WHERE rowid = {row}.image_id;"


def _text(row: str) -> str:
    return (
        f"UPDATE lexical SET text = {_TEXT.format(i=row + '.image_id')} "
        f"WHERE rowid = {row}.image_id; DELETE FROM {GRAMS} WHERE rowid = {row}.image_id;"
    )


_TRIGGERS = (
    # The row's words, weighted by field, whenever a field changes (unaccent is not
    # IMMUTABLE: no generated column).
    "CREATE FUNCTION lexical_doc() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    f"new.doc := {_DOC}; RETURN new; END $$",
    _trigger("lexical_doc", "BEFORE INSERT OR UPDATE", "lexical", "lexical_doc"),
    _function(
        "lexical_image",
        "IF TG_OP <> 'INSERT' THEN DELETE FROM lexical WHERE rowid = old.id; END IF; "
        f"IF TG_OP = 'DELETE' THEN DELETE FROM {GRAMS} WHERE rowid = old.id; "
        f"ELSE INSERT INTO lexical {_COLUMNS} VALUES (new.id, {_row('new')}); END IF;",
    ),
    _trigger("lexical_image_insert", "AFTER INSERT", "images", "lexical_image"),
    _trigger(
        "lexical_image_update", "AFTER UPDATE OF path, root_id, keywords", "images", "lexical_image"
    ),
    _trigger("lexical_image_delete", "AFTER DELETE", "images", "lexical_image"),
    _function(
        "lexical_caption",
        f"IF TG_OP <> 'INSERT' THEN {_caption('old')} END IF; "
        f"IF TG_OP <> 'DELETE' THEN {_caption('new')} END IF;",
    ),
    *(
        _trigger(f"lexical_caption_{e.lower()}", f"AFTER {e}", "captions", "lexical_caption")
        for e in ("INSERT", "UPDATE", "DELETE")
    ),
    _function(
        "lexical_text",
        f"IF TG_OP <> 'INSERT' THEN {_text('old')} END IF; "
        f"IF TG_OP <> 'DELETE' THEN {_text('new')} "
        f"INSERT INTO {GRAMS} (rowid, text) VALUES (new.image_id, new.folded); END IF;",
    ),
    *(
        _trigger(f"lexical_text_{e.lower()}", f"AFTER {e}", "image_text", "lexical_text")
        for e in ("INSERT", "UPDATE", "DELETE")
    ),
)

# Everything, on a database holding the ORM's tables (no "%" and no ":word" anywhere:
# these also run through Alembic's op.execute and SQLAlchemy's exec_driver_sql).
DDL: tuple[str, ...] = (
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE EXTENSION IF NOT EXISTS unaccent",
    # Without stop words: FTS5 keeps "the" and "who", so must this.
    f"CREATE TEXT SEARCH DICTIONARY {CONFIG}_stem (TEMPLATE = snowball, Language = english)",
    f"CREATE TEXT SEARCH CONFIGURATION {CONFIG} (COPY = simple)",
    f"ALTER TEXT SEARCH CONFIGURATION {CONFIG} ALTER MAPPING FOR asciiword, asciihword, "
    "hword_asciipart, word, hword, hword_part, numword, numhword, hword_numpart "
    f"WITH unaccent, {CONFIG}_stem",
    "CREATE TABLE lexical (rowid bigint PRIMARY KEY, "
    + ", ".join(f"{f} text NOT NULL DEFAULT ''" for f in FIELDS)
    + ", doc tsvector NOT NULL DEFAULT '')",
    "CREATE INDEX ix_lexical_doc ON lexical USING gin (doc)",
    f"CREATE TABLE {GRAMS} (rowid bigint PRIMARY KEY, text text NOT NULL)",
    f"CREATE INDEX ix_{GRAMS}_text ON {GRAMS} USING gin (text gin_trgm_ops)",
    *_TRIGGERS,
)
HEAD_DDL = DDL  # what a new catalog gets: PostgreSQL's index came whole, with revision 0008
TRIGGERS = tuple(
    re.match(r"CREATE TRIGGER (\w+)", d).group(1) for d in DDL if d.startswith("CREATE TRIGGER")
)
# A tuple of statements: every image already in the catalog, and the text read in them.
FILL: tuple[str, ...] = (
    f"INSERT INTO lexical {_COLUMNS} SELECT images.id, {_row('images')} FROM images",
    f"INSERT INTO {GRAMS} (rowid, text) SELECT image_id, folded FROM image_text",
)
# DDL undone (the extensions stay: other things may use them).
DROP: tuple[str, ...] = (
    *(
        f"DROP TRIGGER IF EXISTS {t} ON "
        + {"doc": "lexical", "image": "images", "caption": "captions", "text": "image_text"}[
            t.split("_")[1]
        ]
        for t in TRIGGERS
    ),
    f"DROP TABLE IF EXISTS {GRAMS}",
    "DROP TABLE IF EXISTS lexical",
    *(f"DROP FUNCTION IF EXISTS lexical_{f}()" for f in ("doc", "image", "caption", "text")),
    f"DROP TEXT SEARCH CONFIGURATION IF EXISTS {CONFIG}",
    f"DROP TEXT SEARCH DICTIONARY IF EXISTS {CONFIG}_stem",
)

_QUERY = f"plainto_tsquery('{CONFIG}', %s)"


def _like(word: str) -> str:
    """`word` anywhere, as an ILIKE pattern."""
    return "%" + re.sub(r"([\\%_])", r"\\\1", word) + "%"


def _indexes(words: list[str]):
    """(FROM, WHERE, its parameters, rank) to ask for `words`, in turn, as lexical's: the
    whole words anywhere, then the words inside the text read in photos (when every word
    is long enough for trigrams)."""
    yield (
        f"lexical, {_QUERY} AS q",
        "doc @@ q",
        (" ".join(words),),
        f"-ts_rank({_RANK_WEIGHTS}, doc, q, 1)",
    )
    folded = [fold(w) for w in words]
    if folded and all(len(w) >= GRAM for w in folded):
        where = " AND ".join("text ILIKE %s" for _ in folded)
        yield GRAMS, where, tuple(_like(w) for w in folded), "-1.0 / (1 + length(text))"


def search(execute: Execute, words: list[str], limit: int) -> list[LexicalHit]:
    """The images holding every word, best first (ts_rank with the field weights)."""
    rows: list = []
    for source, where, params, rank in _indexes(words) if words else ():
        sql = f"SELECT rowid, {rank} AS r FROM {source} WHERE {where} ORDER BY r, rowid LIMIT %s"
        if rows := list(execute(sql, (*params, limit))):
            break
    return [LexicalHit(int(i), float(r)) for i, r in rows]


def matching_ids(execute: Execute, words: list[str]) -> list[int]:
    """The ids of every image holding every word, in no order, unranked."""
    rows: list = []
    for source, where, params, _ in _indexes(words) if words else ():
        if rows := list(execute(f"SELECT rowid FROM {source} WHERE {where}", params)):
            break
    return [int(r[0]) for r in rows]


def count(execute: Execute, words: list[str], most: int) -> int:
    """How many images hold every word, counted up to `most`."""
    for source, where, params, _ in _indexes(words) if words else ():
        sql = f"SELECT count(*) FROM (SELECT 1 FROM {source} WHERE {where} LIMIT %s) AS found"
        if found := int(next(iter(execute(sql, (*params, most))))[0]):
            return found
    return 0


def fields_matched(execute: Execute, words: list[str], ids: list[int]) -> dict[int, dict[str, str]]:
    """For each of `ids`, the fields in which any of `words` occurs (in FIELDS order),
    each with its text (a snippet of the text read), the matched words between MARK_START
    and MARK_END; as lexical.fields_matched gives."""
    found: dict[int, dict[str, str]] = {i: {} for i in ids}
    if not words or not ids:
        return found
    any_word = " || ".join([_QUERY] * len(words))
    rows = list(
        execute(
            f"SELECT rowid, {', '.join(FIELDS)} FROM lexical "
            f"WHERE rowid = ANY(%s) AND doc @@ ({any_word})",
            (list(ids), *words),
        )
    )
    tokens = {i: {f: _tokens(t) for f, t in zip(FIELDS, texts)} for i, *texts in rows}
    spelled = {t for fields in tokens.values() for ts in fields.values() for _, _, t in ts}
    lexemes = _lexemes(execute, [*words, *spelled])
    wanted = {w: set(lexemes.get(w, ())) for w in words}
    for (i, *texts), fields in zip(rows, tokens.values()):
        for field, text in zip(FIELDS, texts):
            spans = [(a, b) for a, b, _ in fields[field]]
            hits = [
                (w, n, 1)
                for n, (_, _, t) in enumerate(fields[field])
                for w in words
                if wanted[w] & set(lexemes.get(t, ()))
            ]
            if hits:
                size = SNIPPET_WORDS if field == "text" else len(spans)
                found[int(i)][field] = _snippet(text, spans, hits, size)
    # Words found only inside a photo's text: marked in its folded form.
    folded = [fold(w) for w in words]
    inside = [i for i, fields in found.items() if "text" not in fields]
    if inside and all(len(w) >= GRAM for w in folded):
        rows = execute(
            f"SELECT rowid, text FROM {GRAMS} WHERE rowid = ANY(%s) AND ("
            + " OR ".join("text ILIKE %s" for _ in folded)
            + ")",
            (inside, *(_like(w) for w in folded)),
        )
        for i, text in rows:
            spans = [(n, n + GRAM) for n in range(len(text) - GRAM + 1)]
            hits = sorted(
                (
                    (w, m.start(), len(w) - GRAM + 1)
                    for w in folded
                    for m in re.finditer(f"(?={re.escape(w)})", text)
                ),
                key=lambda h: h[1],
            )
            if hits:
                found[int(i)]["text"] = _snippet(text, spans, hits, GRAM_SNIPPET)
    return found


def _tokens(text: str) -> list[tuple[int, int, str]]:
    """(start, end, word) of each word of `text`, split as unicode61 splits."""
    return [(m.start(), m.end(), m.group()) for m in _WORD.finditer(text)]


def _lexemes(execute: Execute, spelled: list[str]) -> dict[str, list[str]]:
    """What the index holds of each word (its stems), as the database stems it."""
    sql = f"SELECT w, tsvector_to_array(to_tsvector('{CONFIG}', w)) FROM unnest(%s::text[]) AS w"
    return {w: list(lex or ()) for w, lex in execute(sql, (list(dict.fromkeys(spelled)),))}


def _snippet(text: str, spans: list[tuple[int, int]], hits: list, size: int) -> str:
    """FTS5's snippet(): of `text`'s tokens (`spans`), the `size` holding the most of the
    words (hits: (word, first token, tokens), by position), preferring a sentence's start,
    each word marked; "…" where it was cut. `size` = every token: highlight()."""
    n = len(spans)

    def score(start: int, adjust: bool) -> tuple[int, int]:
        seen: set[str] = set()
        total, first, last = 0, -1, 0
        for word, at, length in hits:
            if start <= at < start + size:
                total += 1 if word in seen else 1000
                seen.add(word)
                first = at if first < 0 else first
                last = at + length
        if not adjust:
            return total, start
        begin = first - int((size - (last - first)) / 2)
        return total, max(0, min(begin, n - size))

    # Sentences start at the first token and after ". " or ": ".
    firsts = [k for k, (a, _) in enumerate(spans) if k == 0 or _after_stop(text, a)]
    best, start = 0, 0
    for _, at, _ in hits:
        total, begin = score(at, True)
        if total > best:
            best, start = total, begin
        sentence = max(f for f in firsts if f <= at)
        if n > size and sentence < at:
            total, _ = score(sentence, False)
            total += 120 if sentence == 0 else 100
            if total > best:
                best, start = total, sentence
    end = start + size - 1  # the last token shown
    # Marks: overlapping hits merged, those starting before the window left out.
    marks: list[list[int]] = []
    for at, last in sorted((at, at + length - 1) for _, at, length in hits):
        if at < start or at > end:
            continue
        if marks and at <= marks[-1][1]:
            marks[-1][1] = max(marks[-1][1], last)
        else:
            marks.append([at, last])
    out = [ELLIPSIS] if start > 0 else []
    offset = spans[start][0] if start > 0 else 0
    for at, last in marks:
        a, b = spans[at][0], spans[min(last, end)][1]
        out += [text[offset:a], MARK_START, text[a:b], MARK_END]
        offset = b
    if end >= n - 1:
        out.append(text[offset:])
    else:
        out += [text[offset : spans[end][1]], ELLIPSIS]
    return "".join(out)


def _after_stop(text: str, at: int) -> bool:
    """Whether the token at `at` follows whitespace after a "." or ":" (FTS5's sentence)."""
    i = at - 1
    while i >= 0 and text[i] in " \t\n\r":
        i -= 1
    return i != at - 1 and i >= 0 and text[i] in ".:"
