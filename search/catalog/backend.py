"""What differs between the catalog's two databases: SQLite (a file in the library folder,
the default) and PostgreSQL (a server several machines share, `--catalog URL`).

Everything else in search.catalog speaks SQLAlchemy or plain SQL both understand; the few
statements written for SQLite (with "?" parameters) reach PostgreSQL through `execute`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import ModuleType

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from search.errors import ConfigError, ImgsearchError

SQLITE, POSTGRESQL = "sqlite", "postgresql"
POSTGRES_MISSING = (
    "a PostgreSQL catalog needs the postgres extra: pip install 'imgsearch[postgres]'"
)
# Any fixed number: the key of the advisory lock that serialises schema changes on
# PostgreSQL, as BEGIN IMMEDIATE does on SQLite.
_SCHEMA_LOCK = 71302024
_RUN_LOCK = 71302025  # held by an index run, on PostgreSQL
_held_here = [0]  # runs of this process holding it (its own run is not "another machine's")


def catalog_url(target: Path | str) -> str:
    """A catalog's SQLAlchemy URL: a path is a SQLite file."""
    return f"sqlite:///{target}" if isinstance(target, Path) else target


def make_engine(target: Path | str) -> Engine:
    url = catalog_url(target)
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        # Not echoed: a mistyped URL may still hold a password.
        raise ConfigError(
            "--catalog: not a database URL (expected postgresql://USER@HOST/DATABASE)"
        ) from None
    dialect = parsed.get_backend_name()
    if dialect == SQLITE:
        return _sqlite_engine(url)
    if dialect != POSTGRESQL:
        raise ConfigError(f"--catalog: {dialect} is not supported (sqlite or postgresql)")
    if parsed.get_driver_name() not in ("psycopg", "psycopg2", "postgresql"):
        raise ConfigError(
            f"--catalog: the {parsed.get_driver_name()} driver is not supported: "
            "use postgresql:// (psycopg 3)"
        )
    url = parsed.set(drivername="postgresql+psycopg")  # psycopg 3, whatever was named
    try:
        # pre_ping: a server restarted since the last query is found before a query fails.
        return create_engine(url, pool_pre_ping=True)
    except (ModuleNotFoundError, NoSuchModuleError):
        raise ConfigError(POSTGRES_MISSING) from None


def _sqlite_engine(url: str) -> Engine:
    engine = create_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _record) -> None:  # pragma: no cover - trivial
        cur = dbapi_conn.cursor()
        # WAL lets the web UI read while an index run writes; NORMAL is crash-safe in WAL.
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    return engine


# Runs one statement written with "?" parameters; returns its rows.
Execute = Callable[[str, tuple], Iterable[tuple]]


def execute(conn) -> Execute:
    """`conn`'s plain-SQL runner for statements written with "?" parameters (sqlite3's
    style): as they are on SQLite, in psycopg's "%s" style on PostgreSQL."""
    if conn.dialect.name == SQLITE:
        return conn.exec_driver_sql

    def run(sql: str, params: tuple = ()):
        return conn.exec_driver_sql(sql.replace("%", "%%").replace("?", "%s"), params)

    return run


def lock_schema(conn) -> None:
    """Inside a transaction: hold the write lock before looking at the schema, so that two
    processes opening a new catalog at once do not both create it."""
    if conn.dialect.name == SQLITE:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_SCHEMA_LOCK})")


@contextlib.contextmanager
def index_run_lock(engine: Engine) -> Iterator[None]:
    """One index run at a time on a PostgreSQL catalog, whichever machine runs it (the
    library folder's file lock only sees its own machine's). A session lock on a
    connection of its own: released with the run, or by the server when the process dies.
    On SQLite the file lock beside the catalog is the whole story."""
    if engine.dialect.name != POSTGRESQL:
        yield
        return
    with engine.connect() as conn:
        held = conn.exec_driver_sql(f"SELECT pg_try_advisory_lock({_RUN_LOCK})").scalar()
        conn.commit()  # the lock outlives the transaction; an open one would idle for hours
        if not held:
            raise ImgsearchError(
                "another `imgsearch index` is running on this catalog (another machine, "
                "or another library folder); wait for it to finish"
            )
        _held_here[0] += 1
        try:
            yield
        finally:
            _held_here[0] -= 1
            # A connection lost during the run (a server restart) took the lock with it.
            with contextlib.suppress(DBAPIError):
                conn.exec_driver_sql(f"SELECT pg_advisory_unlock({_RUN_LOCK})")
                conn.commit()


def index_run_active(engine: Engine) -> bool:
    """Whether another process's index run (any machine's) holds a PostgreSQL catalog's
    run lock: readers then serve the index they have rather than rebuild at each commit."""
    if engine.dialect.name != POSTGRESQL or _held_here[0]:
        return False
    with engine.connect() as conn:
        sql = f"SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND objid = {_RUN_LOCK}"
        return conn.exec_driver_sql(sql).first() is not None


def tables(conn) -> list[str]:
    """The catalog's tables (none: a new catalog)."""
    return [t for t in inspect(conn).get_table_names() if not t.startswith("sqlite_")]


def lexical(dialect: str) -> ModuleType:
    """The lexical index's queries and DDL for this database: FTS5 or tsvector/pg_trgm."""
    if dialect == SQLITE:
        from search.catalog import lexical as module
    else:
        from search.catalog import lexical_pg as module
    return module
