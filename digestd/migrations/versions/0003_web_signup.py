"""Web sign-up: a subscriber is pending until confirmed; when their confirmation mail went;
topics get a description for the sign-up page and their feed.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
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
    with op.batch_alter_table("topic", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("description", sqlmodel.AutoString(), nullable=False, server_default="")
        )


def downgrade() -> None:
    """Drop the confirmation columns (pending sign-ups become ordinary subscribers) and the
    topic descriptions."""
    with op.batch_alter_table("topic", schema=None) as batch_op:
        batch_op.drop_column("description")
    with op.batch_alter_table("subscriber", schema=None) as batch_op:
        batch_op.drop_column("confirmation_sent_at")
        batch_op.drop_column("confirmed_at")
