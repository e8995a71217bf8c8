"""Alembic environment. Runs from code at start-up (search.catalog.store.migrate) or from the
alembic CLI; either way against the catalog's own connection."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from search.catalog.lexical import described_elsewhere
from search.catalog.schema import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url"))
    with engine.begin() as conn:
        _run(conn)


def _run(connection) -> None:
    # render_as_batch: SQLite cannot ALTER most things in place; batch mode copies tables.
    # include_name: the lexical index is made by its own DDL (search.catalog.lexical).
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        include_name=described_elsewhere,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported")
run_migrations_online()
