"""text in photos: what OCR read in each image, searchable through the lexical index

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 03:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from search.catalog import lexical, lexical_pg

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # No rows: nothing read yet. Indexing with OCR on reads the images without one.
    op.create_table(
        "image_text",
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("folded", sa.Text(), nullable=False),
        sa.Column("lines", sa.Text(), nullable=False),
        sa.Column("read_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"],
            ["images.id"],
            name=op.f("fk_image_text_image_id_images"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("image_id", name=op.f("pk_image_text")),
    )
    if op.get_bind().dialect.name != "sqlite":
        # PostgreSQL: the whole lexical index (0004 left it out), filled from the catalog.
        for statement in lexical_pg.DDL + lexical_pg.FILL:
            op.execute(statement)
        return
    # The image triggers as they are now (they read the text table), and the text's own
    # (with the trigram index they fill).
    for statement in lexical.IMAGE_TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {statement.split()[2]}")
        op.execute(statement)
    for statement in lexical.TEXT_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        for statement in lexical_pg.DROP:
            op.execute(statement)
        op.drop_table("image_text")
        return
    for statement in lexical.TEXT_TRIGGERS:
        if "TRIGGER" in statement:
            op.execute(f"DROP TRIGGER IF EXISTS {statement.split()[2]}")
    op.execute(f"DROP TABLE IF EXISTS {lexical.GRAMS}")
    for statement in lexical.image_triggers(text=False):
        op.execute(f"DROP TRIGGER IF EXISTS {statement.split()[2]}")
        op.execute(statement)
    op.drop_table("image_text")
