"""The lexical index on PostgreSQL (search.catalog.lexical_pg): the same rows written to
it and to SQLite's FTS5 index (search.catalog.lexical) find the same images, with the same
marked fields."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from search.catalog import lexical, lexical_pg
from search.catalog.lexical import MARK_END as E
from search.catalog.lexical import MARK_START as S
from search.catalog.lexical import terms
from search.catalog.schema import Base

RECEIPT = (
    "(The first line of a long receipt). Invoice number 42 for the voice lessons, "
    "paid in cash at the shop; thanks for visiting. Come again soon!"
)
_IMAGE = (
    "INSERT INTO images (id, root_id, path, size, mtime_ns, content_hash, width, height, "
    "date, indexed_at, keywords) VALUES (?, 1, ?, 1, 1, 'h', 1, 1, '2024-01-01', "
    "'2024-01-01', ?)"
)


class Twins:
    """One catalog in PostgreSQL and one in SQLite, written alike."""

    def __init__(self, pg_url: str, ddl: bool = True) -> None:
        self.pg = sa.create_engine(pg_url).connect()
        self.lite = sa.create_engine("sqlite://").connect()
        self.lite.exec_driver_sql("PRAGMA foreign_keys=ON")  # as the catalog has it
        for conn, statements in (
            (self.pg, lexical_pg.DDL if ddl else ()),
            (self.lite, lexical.HEAD_DDL),
        ):
            Base.metadata.create_all(conn)
            for statement in statements:
                conn.exec_driver_sql(statement)
        self.sql(
            "INSERT INTO roots (id, path, added_at) VALUES (1, '/home/anna/Pictures', '2024-01-01')"
        )

    def close(self) -> None:
        self.pg.close()
        self.pg.engine.dispose()
        self.lite.close()

    def sql(self, statement: str, params: tuple = ()) -> None:
        self.lite.exec_driver_sql(statement, params)
        self.pg.exec_driver_sql(statement.replace("?", "%s"), params)

    def image(self, i: int, path: str, keywords: str | None = None) -> None:
        self.sql(_IMAGE, (i, "/home/anna/Pictures/" + path, keywords))

    def caption(self, i: int, image: int, text: str) -> None:
        self.sql(
            "INSERT INTO captions (id, image_id, text, source, created_at) "
            "VALUES (?, ?, ?, 'user', '2024-01-01')",
            (i, image, text),
        )

    def text(self, image: int, text: str) -> None:
        self.sql(
            "INSERT INTO image_text (image_id, text, folded, lines, read_at) "
            "VALUES (?, ?, ?, '[]', '2024-01-01')",
            (image, text, lexical.grams_text(text)),
        )

    def ids(self, query: str) -> set[int]:
        """The images holding every word of `query`: the same in both, by every function."""
        words = terms(query)
        run, lite = self.pg.exec_driver_sql, self.lite.exec_driver_sql
        found = set(lexical_pg.matching_ids(run, words))
        assert found == set(lexical.matching_ids(lite, words))
        assert {h.id for h in lexical_pg.search(run, words, 50)} == found
        assert lexical_pg.count(run, words, 50) == len(found)
        return found

    def fields(self, query: str, ids: list[int]) -> dict[int, dict[str, str]]:
        words = terms(query)
        found = lexical_pg.fields_matched(self.pg.exec_driver_sql, words, ids)
        assert found == lexical.fields_matched(self.lite.exec_driver_sql, words, ids)
        return found


@pytest.fixture
def make(pg_url):
    """Twins on the test's database (closed at its end, before it is dropped)."""
    made: list[Twins] = []
    yield lambda ddl=True: made.append(Twins(pg_url, ddl)) or made[-1]
    for t in made:
        t.close()


@pytest.fixture
def twins(make) -> Twins:
    t = make()
    t.image(1, "Málaga trip/IMG_2034_beach.jpg", "sea\nsand")
    t.image(2, "2019/weddings.png")
    t.image(3, "Lisbon/DSC0001.jpg")
    t.caption(1, 1, "Beach day!")
    t.caption(2, 3, "Anna's wedding in Lisbon")
    t.text(1, RECEIPT)
    t.text(2, "Totalinvoicedamount: 1200 EUR")
    return t


def test_each_field_stems_and_folds_as_fts5(twins) -> None:
    assert twins.ids("beach") == {1}  # name and caption
    assert twins.ids("img 2034 jpg") == {1}  # a file name's words, split as unicode61 does
    assert twins.ids("malaga") == twins.ids("MÁLAGA") == {1}  # the folder, without accents
    assert twins.ids("trip") == {1}
    assert twins.ids("sand") == {1}  # keywords
    assert twins.ids("receipt") == twins.ids("lessons") == {1}  # the text read
    assert twins.ids("wedding") == twins.ids("weddings") == {2, 3}  # stemmed
    assert twins.ids("the") == {1}  # no stop words
    assert twins.ids("lisbon") == {3}
    assert twins.ids("lisbon wedding") == {3}  # every word
    assert twins.ids("lisbon beach") == set()
    assert twins.ids("home anna pictures") == set()  # the root's own path: no words
    assert twins.ids("anna") == {3}  # ...but a caption's
    assert twins.ids("") == set()


def test_fields_matched_marks_the_words(twins) -> None:
    found = twins.fields("beach malaga sand", [1, 2, 3])
    assert found == {
        1: {
            "name": f"IMG_2034_{S}beach{E}.jpg",
            "folder": f"/{S}Málaga{E} trip/",
            "caption": f"{S}Beach{E} day!",
            "keywords": f"sea\n{S}sand{E}",
        },
        2: {},
        3: {},
    }
    # Of the text read, a snippet around the words, cut with "…".
    text = twins.fields("voice", [1])[1]["text"]
    assert text == f"…Invoice number 42 for the {S}voice{E} lessons, paid in cash at the…"
    assert twins.fields("first", [1])[1]["text"].startswith(f"(The {S}first{E} line")
    assert twins.fields("soon", [1])[1]["text"].endswith(f"again {S}soon{E}!")
    assert twins.fields("weddings", [2, 3])[2] == {"name": f"{S}weddings{E}.png"}
    assert twins.fields("", [1]) == {1: {}}
    assert twins.fields("beach", []) == {}


def test_words_inside_the_text_read_when_no_whole_word_matches(twins) -> None:
    assert twins.ids("voice") == {1}  # whole, so not inside "invoice"
    assert twins.ids("invoiced") == {1}  # "Invoice" stemmed
    assert twins.ids("amount") == {2}  # inside "totalinvoicedamount"
    assert twins.ids("amount eur") == {2}
    assert twins.ids("oic") == {1, 2}
    assert twins.ids("oi") == set()  # too short for trigrams
    assert twins.ids("amount zebra") == set()
    hits = lexical_pg.search(twins.pg.exec_driver_sql, ["oic"], 10)
    assert [h.id for h in hits] == [2, 1]  # the shorter text first
    assert hits[0].rank < hits[1].rank
    assert twins.fields("amount", [1, 2])[2] == {
        "text": f"totalinvoiced{S}amount{E}: 1200 eur\ntotalinvoiced{S}amount{E}:…"
    }


def test_captions_renames_and_deletes_keep_the_index_in_step(twins) -> None:
    twins.caption(3, 2, "Mountains")
    assert twins.ids("mountain") == {2}
    twins.sql("UPDATE captions SET text = 'Sunset' WHERE id = 3")
    assert twins.ids("mountain") == set() and twins.ids("sunset") == {2}
    assert twins.fields("beach sunset", [2]) == {2: {"caption": f"{S}Sunset{E}"}}
    twins.sql("DELETE FROM captions WHERE id = 3")
    assert twins.ids("sunset") == set() and twins.ids("weddings") == {2, 3}
    twins.caption(4, 1, "with Anna")  # captions joined, in order
    assert twins.fields("anna", [1])[1]["caption"] == f"Beach day! with {S}Anna{E}"

    twins.sql("UPDATE images SET path = '/home/anna/Pictures/Porto/party.jpg' WHERE id = 1")
    assert twins.ids("malaga") == set() and twins.ids("porto party") == {1}
    assert twins.ids("beach") == {1} and twins.ids("receipt") == {1}  # caption, text kept
    twins.sql("UPDATE images SET keywords = 'dune' WHERE id = 1")
    assert twins.ids("sand") == set() and twins.ids("dune") == {1}

    twins.sql("UPDATE image_text SET text = 'Exit', folded = 'exit' WHERE image_id = 1")
    assert twins.ids("receipt") == set() and twins.ids("exit") == {1}
    twins.sql("DELETE FROM image_text WHERE image_id = 2")
    assert twins.ids("amount") == set()
    twins.sql("DELETE FROM images WHERE id = 1")
    assert twins.ids("beach") == twins.ids("exit") == twins.ids("xit") == set()
    assert twins.pg.exec_driver_sql("SELECT count(*) FROM lexical").scalar() == 2


def test_count_stops_at_most(twins) -> None:
    for i in range(4, 12):
        twins.image(i, f"beach/{i}.jpg")
    assert lexical_pg.count(twins.pg.exec_driver_sql, ["beach"], 5) == 5
    assert lexical_pg.count(twins.pg.exec_driver_sql, ["beach"], 50) == 9
    assert lexical_pg.count(twins.pg.exec_driver_sql, ["zebra"], 5) == 0
    assert len(lexical_pg.search(twins.pg.exec_driver_sql, ["beach"], 3)) == 3


def test_a_caption_ranks_above_a_name(make) -> None:
    t = make()
    t.image(1, "holiday/beach.jpg")
    t.image(2, "holiday/DSC0002.jpg")
    t.caption(1, 2, "beach")
    for search in (lexical_pg.search, lexical.search):
        run = (t.pg if search is lexical_pg.search else t.lite).exec_driver_sql
        hits = search(run, ["beach"], 10)
        assert [h.id for h in hits] == [2, 1]
        assert hits[0].rank < hits[1].rank  # lower is better


# FTS5's syntax, other scripts, emoji, LIKE's wildcards, a page pasted in the box.
HOSTILE = '"beach|beach*|-beach|NEAR(beach|caption: beach|🎉 beach|شاطئ בחוף|50% off_1\\'
HOSTILE_QUERIES = [*HOSTILE.split("|"), "x" * 10_000, "beach " * 2_000]


@pytest.mark.parametrize("query", HOSTILE_QUERIES)
def test_hostile_words_never_error(twins, query) -> None:
    found = twins.ids(query)
    twins.fields(query, [1, 2, 3])
    assert found <= {1}


def test_fill_indexes_a_catalog_already_there_and_drop_undoes_it(make) -> None:
    t = make(ddl=False)
    t.image(1, "Lisbon/tram.jpg", "yellow")
    t.caption(1, 1, "Alfama")
    t.text(1, "Totalinvoicedamount")
    for statement in lexical_pg.DDL + lexical_pg.FILL:
        t.pg.exec_driver_sql(statement)
    assert t.ids("lisbon tram yellow alfama") == {1}
    assert t.ids("totalinvoicedamount") == t.ids("amount") == {1}
    for statement in lexical_pg.DROP:
        t.pg.exec_driver_sql(statement)
    tables = sa.inspect(t.pg).get_table_names()
    assert not [n for n in tables if not lexical_pg.described_elsewhere(n, "table", None)]
    t.pg.exec_driver_sql("DELETE FROM images")  # no trigger left to fail
    for statement in lexical_pg.HEAD_DDL:  # and it can be made again
        t.pg.exec_driver_sql(statement)
    assert set(lexical_pg.TRIGGERS) == {
        r[0] for r in t.pg.exec_driver_sql("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")
    }
