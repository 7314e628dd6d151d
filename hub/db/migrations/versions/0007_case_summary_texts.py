"""case summary in each language

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 19:42:22.571373
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Cases opened before keep only their one-string summary (None here).
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("summary_texts", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_column("summary_texts")
