"""tags: zero-shot and taught tags, their scorers per model, and the images holding them

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 13:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tags",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("prompts", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tags")),
        sa.UniqueConstraint("name", name=op.f("uq_tags_name")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "tag_examples",
        sa.Column("tag_id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("positive", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tag_id"], ["tags.id"], name=op.f("fk_tag_examples_tag_id_tags"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["image_id"],
            ["images.id"],
            name=op.f("fk_tag_examples_image_id_images"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tag_id", "image_id", name=op.f("pk_tag_examples")),
    )
    op.create_index(op.f("ix_tag_examples_image_id"), "tag_examples", ["image_id"], unique=False)
    op.create_table(
        "tag_scorers",
        sa.Column("tag_id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.String(length=200), nullable=False),
        sa.Column("weights", sa.LargeBinary(), nullable=False),
        sa.Column("bias", sa.Float(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("tag_version", sa.Integer(), nullable=False),
        sa.Column("applied_revision", sa.Integer(), nullable=False),
        sa.Column("fitted_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tag_id"], ["tags.id"], name=op.f("fk_tag_scorers_tag_id_tags"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["models.model_id"],
            name=op.f("fk_tag_scorers_model_id_models"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tag_id", "model_id", name=op.f("pk_tag_scorers")),
    )
    op.create_index(op.f("ix_tag_scorers_model_id"), "tag_scorers", ["model_id"], unique=False)
    op.create_table(
        "image_tags",
        sa.Column("tag_id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.String(length=200), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tag_id"], ["tags.id"], name=op.f("fk_image_tags_tag_id_tags"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["models.model_id"],
            name=op.f("fk_image_tags_model_id_models"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["image_id"],
            ["images.id"],
            name=op.f("fk_image_tags_image_id_images"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tag_id", "model_id", "image_id", name=op.f("pk_image_tags")),
    )
    op.create_index(
        "ix_image_tags_model_id_image_id", "image_tags", ["model_id", "image_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_image_tags_model_id_image_id", table_name="image_tags")
    op.drop_table("image_tags")
    op.drop_index(op.f("ix_tag_scorers_model_id"), table_name="tag_scorers")
    op.drop_table("tag_scorers")
    op.drop_index(op.f("ix_tag_examples_image_id"), table_name="tag_examples")
    op.drop_table("tag_examples")
    op.drop_table("tags")
