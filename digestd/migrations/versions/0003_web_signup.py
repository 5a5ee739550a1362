"""Web sign-up: a subscriber is pending until confirmed; when their confirmation mail went.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the confirmation columns; everyone already there was added by an operator."""
    with op.batch_alter_table("subscriber", schema=None) as batch_op:
        batch_op.add_column(sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("confirmation_sent_at", sa.DateTime(timezone=True), nullable=True)
        )
    op.execute("UPDATE subscriber SET confirmed_at = created_at")


def downgrade() -> None:
    """Drop the confirmation columns (pending sign-ups become ordinary subscribers)."""
    with op.batch_alter_table("subscriber", schema=None) as batch_op:
        batch_op.drop_column("confirmation_sent_at")
        batch_op.drop_column("confirmed_at")
