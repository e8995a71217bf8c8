"""embedding revision: which vectors changed since an index was built

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 15:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("embeddings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("revision", sa.Integer(), server_default="0", nullable=False))
        batch_op.create_index(
            "ix_embeddings_model_id_revision", ["model_id", "revision"], unique=False
        )
    # Vectors written before this column count as written at their model's current
    # revision: any index built earlier than that sees them as changed, never as current.
    op.execute(
        "UPDATE embeddings SET revision = "
        "(SELECT models.revision FROM models WHERE models.model_id = embeddings.model_id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("embeddings", schema=None) as batch_op:
        batch_op.drop_index("ix_embeddings_model_id_revision")
        batch_op.drop_column("revision")
