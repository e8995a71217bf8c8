"""videos: a duration per image (NULL for photos), and each video's frame vectors

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 02:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("images") as batch_op:
        batch_op.add_column(sa.Column("duration", sa.Float(), nullable=True))
    op.create_table(
        "frames",
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.String(length=200), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("t", sa.Float(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], name=op.f("fk_frames_image_id_images"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["models.model_id"],
            name=op.f("fk_frames_model_id_models"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("image_id", "model_id", "position", name=op.f("pk_frames")),
    )
    op.create_index("ix_frames_model_id_revision", "frames", ["model_id", "revision"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_frames_model_id_revision", table_name="frames")
    op.drop_table("frames")
    with op.batch_alter_table("images") as batch_op:
        batch_op.drop_column("duration")
