"""The reader's choices: each subscriber's (and sign-up's) digest order and language, and a
pause of some days (no digest before ``paused_until``).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add digest_order and language to subscriber and sign_up_request, paused_until to
    subscriber."""
    for table in ("subscriber", "sign_up_request"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(
                sa.Column(
                    "digest_order",
                    sqlmodel.AutoString(length=16),
                    nullable=False,
                    server_default="relevance",
                )
            )
            batch_op.add_column(
                sa.Column(
                    "language", sqlmodel.AutoString(length=8), nullable=False, server_default="en"
                )
            )
    with op.batch_alter_table("subscriber", schema=None) as batch_op:
        batch_op.add_column(sa.Column("paused_until", sa.Date(), nullable=True))


def downgrade() -> None:
    """Drop them again."""
    with op.batch_alter_table("subscriber", schema=None) as batch_op:
        batch_op.drop_column("paused_until")
    for table in ("subscriber", "sign_up_request"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("language")
            batch_op.drop_column("digest_order")
