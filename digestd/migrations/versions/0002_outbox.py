"""The outbox: delivery rows carry their planned papers, attempts and retry times, one per
(subscriber, digest key); subscribers can be suppressed; bounces are recorded.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the outbox columns, the suppression columns and the bounce table."""
    # A (subscriber, key) pair may repeat in older data (a failed try, then a sent one; or two
    # forced sends in a day): the newest row keeps the key, older ones get a suffixed key.
    op.execute(
        "UPDATE delivery SET digest_key = digest_key || '#' || CAST(id AS VARCHAR)"
        " WHERE id NOT IN (SELECT MAX(id) FROM delivery GROUP BY subscriber_id, digest_key)"
    )
    op.execute("UPDATE delivery SET status = 'failed' WHERE status = 'error'")
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("paper_ids", sqlmodel.AutoString(), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(
            sa.Column("interrupted", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("give_up_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f("ix_delivery_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_delivery_message_id"), ["message_id"], unique=False)
        batch_op.create_unique_constraint(
            "uq_delivery_subscriber_id_digest_key", ["subscriber_id", "digest_key"]
        )
    op.execute("UPDATE delivery SET attempts = 1, sent_at = created_at WHERE status = 'sent'")
    op.execute("UPDATE delivery SET attempts = 1 WHERE status = 'failed'")
    with op.batch_alter_table("subscriber", schema=None) as batch_op:
        batch_op.add_column(sa.Column("suppressed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("suppressed_reason", sqlmodel.AutoString(), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("lifted_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "bounce",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("delivery_id", sa.Integer(), nullable=True),
        sa.Column("kind", sqlmodel.AutoString(length=16), nullable=False),
        sa.Column("status", sqlmodel.AutoString(length=16), nullable=False),
        sa.Column("reason", sqlmodel.AutoString(), nullable=False),
        sa.Column("source", sqlmodel.AutoString(length=16), nullable=False),
        sa.Column("report_key", sqlmodel.AutoString(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["delivery_id"], ["delivery.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscriber.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("report_key"),
    )
    with op.batch_alter_table("bounce", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_bounce_subscriber_id"), ["subscriber_id"])


def downgrade() -> None:
    """Drop the bounce table and the outbox and suppression columns."""
    op.drop_table("bounce")
    with op.batch_alter_table("subscriber", schema=None) as batch_op:
        batch_op.drop_column("lifted_at")
        batch_op.drop_column("suppressed_reason")
        batch_op.drop_column("suppressed_at")
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.drop_constraint("uq_delivery_subscriber_id_digest_key", type_="unique")
        batch_op.drop_index(batch_op.f("ix_delivery_status"))
        batch_op.drop_index(batch_op.f("ix_delivery_message_id"))
        for name in ("sent_at", "give_up_at", "next_attempt_at", "interrupted", "attempts"):
            batch_op.drop_column(name)
        batch_op.drop_column("paper_ids")
