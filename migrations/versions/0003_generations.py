"""generations: how each generated sound was made (prompt, seed, settings, models, neighbours)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 19:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "generations",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "sound_id",
            sa.Integer(),
            sa.ForeignKey("sounds.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("job_id", sa.String(36), nullable=True),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("models", sa.JSON(), nullable=False),
        sa.Column("neighbour_ids", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_generations_sound_id", "generations", ["sound_id"], unique=True)
    op.create_index("ix_generations_job_id", "generations", ["job_id"])


def downgrade() -> None:
    op.drop_index("ix_generations_job_id", table_name="generations")
    op.drop_index("ix_generations_sound_id", table_name="generations")
    op.drop_table("generations")
