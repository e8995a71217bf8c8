"""duplicates: a signature per image, and the groups of copies, edits and bursts

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 22:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing images get their signature the first time duplicates are looked for
    # (search.duplicates.groups decodes the ones without).
    with op.batch_alter_table("images") as batch_op:
        batch_op.add_column(sa.Column("signature", sa.LargeBinary(), nullable=True))
    op.create_table(
        "duplicate_members",
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"],
            ["images.id"],
            name=op.f("fk_duplicate_members_image_id_images"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("group_id", "image_id", name=op.f("pk_duplicate_members")),
    )
    op.create_index(
        op.f("ix_duplicate_members_image_id"), "duplicate_members", ["image_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_duplicate_members_image_id"), table_name="duplicate_members")
    op.drop_table("duplicate_members")
    with op.batch_alter_table("images") as batch_op:
        batch_op.drop_column("signature")
