"""lexical index: words of names, folders, captions and embedded keywords (FTS5); pixel hash

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 17:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from search.catalog import lexical

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL: not read yet. Images catalogued before this revision get their embedded
    # keywords on the next index run (indexer.sync.plan reads them without re-embedding).
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.add_column(sa.Column("keywords", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("pixel_hash", sa.String(length=32), nullable=True))
    if op.get_bind().dialect.name != "sqlite":
        return  # PostgreSQL's lexical index (tsvector, pg_trgm) comes whole with 0008
    for statement in lexical.DDL:
        op.execute(statement)
    op.execute(lexical.FILL)


def downgrade() -> None:
    for trigger in lexical.TRIGGERS if op.get_bind().dialect.name == "sqlite" else ():
        op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE IF EXISTS lexical")
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.drop_column("pixel_hash")
        batch_op.drop_column("keywords")
